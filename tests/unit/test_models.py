"""The model registry: every model builds, runs, and declares what it prunes.

Each model is built once, at the cheapest width and image size it allows (the fixed-width ones,
GoogLeNet, Inception-V3 and the CLIP backbones, at full size), and shared by the tests here.
"""
import open_clip
import pytest
import torch
from torch import nn

from lth_sweep.trainables.models import MODELS, PrunableModel, build_model
from lth_sweep.trainables.specs import ModelSpec

#: (width, image size) at which each registered model is cheap; None: its only width
SMALL = {
    "lenet_300_100": (None, 8),
    "conv2": (8, 16),
    "conv4": (8, 16),
    "conv6": (8, 16),
    "resnet20": (4, 16),
    "resnet56": (4, 16),
    "resnet18": (8, 16),
    "resnet50": (8, 16),
    "vgg16": (4, 16),
    "vgg19": (4, 16),
    "wrn28_10": (1, 16),
    "googlenet": (None, 15),
    "inception_v3": (None, 75),
    "clip_vit_b32": (None, 32),
    "clip_rn50": (None, 32),
}
FIXED_WIDTH = sorted(name for name, (width, _) in SMALL.items() if width is None and name != "lenet_300_100")
NUM_CLASSES = 7

pytestmark = pytest.mark.usefixtures("plain_cpu_convolutions")  # oneDNN off: tests/unit/conftest.py


@pytest.fixture(scope="module")
def built():
    """name -> the model at its SMALL size, in eval mode; built on first use. Tests must not change it."""
    cache: dict[str, PrunableModel] = {}

    def get(name: str) -> PrunableModel:
        if name not in cache:
            width, size = SMALL[name]
            torch.manual_seed(0)
            spec = ModelSpec(name=name, width=width)
            cache[name] = build_model(spec, in_channels=3, image_size=size, num_classes=NUM_CLASSES).eval()
        return cache[name]

    return get


def images(name: str, channels: int = 3, n: int = 2) -> torch.Tensor:
    size = SMALL[name][1]
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(1))


def test_every_registered_model_has_a_test_size():
    assert set(SMALL) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_images_to_logits_as_head_of_embed(name, built):
    model = built(name)
    maps = []
    layer = model.gradcam_layer
    hook = layer.register_forward_hook(lambda module, inputs, output: maps.append(output)) if layer else None
    x = images(name)
    with torch.no_grad():
        logits = model(x)
        if hook:
            hook.remove()
        if name not in FIXED_WIDTH:  # the big ones: forward is PrunableModel's, checked below
            torch.testing.assert_close(model.head(model.embed(x)), logits, rtol=0, atol=0)
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()
    assert type(model).forward is PrunableModel.forward
    if name == "lenet_300_100":
        assert layer is None
        return
    assert any(module is layer for module in model.modules())
    (feature_map,) = maps
    assert feature_map.dim() == 4 and feature_map.shape[0] == 2 and min(feature_map.shape[2:]) >= 1, name


@pytest.mark.parametrize("name", sorted(set(MODELS) - set(FIXED_WIDTH)))
def test_grey_images_and_gradients_reach_the_gradcam_layer(name):
    torch.manual_seed(0)
    width, size = SMALL[name]
    model = build_model(ModelSpec(name=name, width=width), in_channels=1, image_size=size, num_classes=NUM_CLASSES)
    layer, maps = model.gradcam_layer, []

    def keep(module, inputs, output):
        output.retain_grad()
        maps.append(output)

    if layer is not None:
        layer.register_forward_hook(keep)
    logits = model(images(name, channels=1))
    assert logits.shape == (2, NUM_CLASSES)
    if layer is not None:
        logits.sum().backward()
        assert maps[0].grad is not None and maps[0].grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_prunable_weights_are_conv_and_linear_weights_only(name, built):
    model = built(name)
    params, modules = dict(model.named_parameters()), dict(model.named_modules())
    prunable = model.prunable_weights()
    assert prunable and len(set(prunable)) == len(prunable)
    for weight in prunable:
        owner, attribute = weight.rsplit(".", 1)
        if attribute == "in_proj_weight":  # the fused q/k/v linear map of an attention layer
            assert isinstance(modules[owner], nn.MultiheadAttention), weight
        else:
            assert attribute == "weight" and isinstance(modules[owner], (nn.Conv2d, nn.Linear)), weight
        assert params[weight].dim() in (2, 4), weight
    norms = [n for n, m in model.named_modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))]
    assert not any(p.startswith(tuple(f"{n}." for n in norms)) for p in prunable)
    assert set(model.default_excluded) <= set(prunable)
    assert model.pruned_weights() == [p for p in prunable if p not in model.default_excluded]
    # filter pruning spares the last prunable weight as the class logits: it must be the head's
    assert prunable[-1] == next(f"{n}.weight" for n, m in model.named_modules() if m is model.head)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_norm_after_pairs_are_consistent(name, built):
    model = built(name)
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    for conv, norm in model.norm_after().items():
        assert isinstance(modules[conv], (nn.Conv2d, nn.Linear)), conv
        assert isinstance(modules[norm], nn.BatchNorm2d), norm
        out = modules[conv].out_channels if isinstance(modules[conv], nn.Conv2d) else modules[conv].out_features
        assert modules[norm].num_features == out, (conv, norm)
        assert f"{conv}.weight" in model.prunable_weights()
        assert model.channel_companions(f"{conv}.weight")[-2:] == [f"{norm}.weight", f"{norm}.bias"]
    for weight in model.prunable_weights():
        assert all(name in params for name in model.channel_companions(weight))


@pytest.mark.parametrize("name,open_clip_name", [("clip_vit_b32", "ViT-B-32"), ("clip_rn50", "RN50")])
def test_clip_backbones_embed_into_clips_space_and_prune_the_image_tower_only(name, open_clip_name, built):
    model = built(name)
    assert model.clip_model_name == open_clip_name and isinstance(model.clip, open_clip.CLIP)
    with torch.no_grad():
        embedding = model.embed(images(name))
        assert embedding.shape == (2, model.clip.visual.output_dim)
        torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))
    prunable = model.prunable_weights()
    assert all(p.startswith("clip.visual.") for p in prunable[:-1]) and prunable[-1] == "fc.weight"
    for param_name, param in model.clip.named_parameters():
        assert param.requires_grad == param_name.startswith("visual."), param_name


def test_known_architectures_have_the_papers_layer_counts():
    conv = {n: build_model(ModelSpec(name=n), in_channels=3, image_size=32, num_classes=10) for n in ("conv2", "conv4", "conv6")}
    assert [len(m.prunable_weights()) for m in conv.values()] == [2 + 3, 4 + 3, 6 + 3]
    lenet = build_model(ModelSpec(name="lenet_300_100"), in_channels=1, image_size=28, num_classes=10)
    assert [p.shape for n, p in lenet.named_parameters() if n in lenet.prunable_weights()] == [
        (300, 784), (100, 300), (10, 100)
    ]
    resnet = build_model(ModelSpec(name="resnet20"), in_channels=3, image_size=32, num_classes=10)
    convs = [n for n in resnet.prunable_weights() if resnet.get_parameter(n).dim() == 4]
    assert len(convs) == 1 + 18 + 2  # stem, 9 blocks x 2, two projection shortcuts
    assert resnet.default_excluded == ("conv.weight",)


def test_excluding_an_unknown_layer_is_an_error_naming_it():
    model = build_model(ModelSpec(name="conv2"), in_channels=3, image_size=16, num_classes=9)
    with pytest.raises(ValueError, match="nope.weight"):
        model.pruned_weights(("nope.weight",))


@pytest.mark.parametrize("name", FIXED_WIDTH)
def test_a_width_for_a_fixed_architecture_is_an_error_naming_it(name):
    with pytest.raises(ValueError, match=rf"model.width: {name} has no width option"):
        build_model(ModelSpec(name=name, width=8), in_channels=3, image_size=SMALL[name][1], num_classes=3)


def test_weights_for_a_model_without_pretrained_weights_is_an_error(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({}, path)
    with pytest.raises(ValueError, match="model.weights: resnet20 has no weights option; models with one: clip_rn50"):
        build_model(ModelSpec(name="resnet20", weights=str(path)), in_channels=3, image_size=16, num_classes=3)
