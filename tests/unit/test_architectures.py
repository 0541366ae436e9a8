"""The real architectures: the papers' sizes, torchvision's layouts, the stems, filter pruning on
them, pretrained weights from local files, and the open_clip backbone on tiny registered configs."""
import json

import open_clip
import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch import nn

from tests.support.tiny import prune_context, state_of
from lth_sweep.trainables.data import ImageSplit
from lth_sweep.trainables.masks import apply_masks, companion_masks, dense_masks
from lth_sweep.trainables.models import MODELS, build_model
from lth_sweep.trainables.models.open_clip_backbone import OpenClipClassifier
from lth_sweep.trainables.models.pretrained import load_pretrained
from lth_sweep.trainables.pruning import filter_pruning
from lth_sweep.trainables.specs import ModelSpec

TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_VISION = {
    "lth-test-tiny-vit": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "lth-test-tiny-vit-wide": {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8},
    "lth-test-tiny-rn": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16},
}

pytestmark = pytest.mark.usefixtures("plain_cpu_convolutions")  # oneDNN off: tests/unit/conftest.py


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    """Test-only open_clip configs, registered through open_clip's own config mechanism."""
    folder = tmp_path_factory.mktemp("open_clip_configs")
    for name, vision in TINY_VISION.items():
        config = {"embed_dim": 32, "vision_cfg": vision, "text_cfg": TINY_TEXT}
        (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return sorted(TINY_VISION)


def build(name, width=None, image_size=16, num_classes=10, in_channels=3, seed=0, weights=None):
    torch.manual_seed(seed)
    spec = ModelSpec(name=name, width=width, weights=None if weights is None else str(weights))
    return build_model(spec, in_channels=in_channels, image_size=image_size, num_classes=num_classes)


def clip(name, image_size=32, num_classes=5, seed=0, weights=None, in_channels=3):
    torch.manual_seed(seed)
    return OpenClipClassifier(
        clip_model_name=name, in_channels=in_channels, image_size=image_size, num_classes=num_classes,
        weights=None if weights is None else str(weights),
    )


def count(model):
    return sum(p.numel() for p in model.parameters())


# --- sizes and layouts -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name,millions",
    [("resnet20", 0.27), ("resnet56", 0.85), ("vgg16", 14.7), ("vgg19", 20.0), ("wrn28_10", 36.5)],
)
def test_full_size_cifar_models_have_the_literatures_parameter_counts(name, millions):
    model = build(name, image_size=32).eval()
    assert count(model) / 1e6 == pytest.approx(millions, rel=0.02)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize(
    "name,image_size,millions",
    [("resnet18", 224, 11.7), ("resnet50", 224, 25.6), ("googlenet", 224, 6.6), ("inception_v3", 299, 23.8)],
)
def test_imagenet_models_have_torchvisions_layout_less_the_auxiliary_classifiers(name, image_size, millions):
    options = {"aux_logits": True, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with torch.device("meta"):  # layouts only: nothing is computed
        ours = MODELS[name](in_channels=3, image_size=image_size, num_classes=1000)
        theirs = getattr(torchvision.models, name)(weights=None, **options)
    auxiliary = ("aux1.", "aux2.", "AuxLogits.")
    their_shapes = {k: v.shape for k, v in theirs.state_dict().items() if not k.startswith(auxiliary)}
    assert {k: v.shape for k, v in ours.state_dict().items()} == their_shapes
    assert count(ours) / 1e6 == pytest.approx(millions, rel=0.01)


def test_resnet20_keeps_its_parameter_names():
    def norm(prefix):
        return [f"{prefix}.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    expected = ["conv.weight", *norm("bn")]
    for index in range(9):
        expected += [f"blocks.{index}.conv1.weight", *norm(f"blocks.{index}.bn1")]
        expected += [f"blocks.{index}.conv2.weight", *norm(f"blocks.{index}.bn2")]
        if index in (3, 6):
            expected += [f"blocks.{index}.shortcut.0.weight", *norm(f"blocks.{index}.shortcut.1")]
    assert list(build("resnet20").state_dict()) == expected + ["fc.weight", "fc.bias"]
    assert len(build("resnet56", width=2).blocks) == 27


@pytest.mark.parametrize("image_size,kernel,pooled,final_map", [(32, 3, False, 4), (64, 3, False, 8), (65, 7, True, 3)])
def test_torchvision_resnets_take_the_cifar_stem_up_to_64_pixels(image_size, kernel, pooled, final_map):
    model = build("resnet18", width=4, image_size=image_size).eval()
    assert model.conv1.kernel_size == (kernel, kernel) and isinstance(model.maxpool, nn.MaxPool2d) == pooled
    maps = []
    model.gradcam_layer.register_forward_hook(lambda module, inputs, output: maps.append(output.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, image_size, image_size))
    assert maps == [(1, 32, final_map, final_map)]


@pytest.mark.parametrize("name,image_size,label,minimum", [
    ("inception_v3", 74, "inception_v3", 75),
    ("googlenet", 14, "googlenet", 15),
    ("vgg16", 15, "vgg16", 16),
    ("clip_vit_b32", 31, "ViT-B-32", 32),
    ("clip_rn50", 16, "RN50", 32),
])
def test_too_small_images_are_an_error_naming_the_minimum(name, image_size, label, minimum):
    message = rf"{label} needs images of at least {minimum}x{minimum} pixels, got {image_size}x{image_size}"
    with pytest.raises(ValueError, match=message):
        build(name, image_size=image_size)


def test_norms_pair_every_batch_norm_of_post_activation_nets_and_only_conv1_in_wide_blocks():
    for name, width in [("resnet56", 2), ("resnet50", 4), ("vgg19", 2)]:
        model = build(name, width=width)
        norms = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
        assert set(model.norm_after().values()) == norms, name
    wide = build("wrn28_10", width=1)
    assert wide.norm_after() == {f"blocks.{i}.conv1": f"blocks.{i}.bn2" for i in range(12)}


# --- filter pruning on the real architectures --------------------------------------------------

@pytest.mark.parametrize("name,width", [("resnet56", 4), ("vgg16", 4), ("wrn28_10", 1), ("resnet18", 4)])
def test_a_filter_pruning_round_silences_the_removed_filters(name, width):
    model = build(name, width=width, num_classes=9)
    masks = dense_masks(model, model.pruned_weights())
    spec = filter_pruning.Spec(rate=0.5, rounds=1)
    generator = torch.Generator().manual_seed(0)
    data = ImageSplit(torch.randn(8, 3, 16, 16, generator=generator), torch.randint(0, 9, (8,), generator=generator))
    ctx = prune_context(spec, model, masks=masks, data=data)  # the model's weights as trained, dense and start
    new = filter_pruning.next_masks(ctx)
    removed = {n: ~m.flatten(1).any(1) for n, m in new.items()}
    assert sum(int(r.sum()) for r in removed.values()) > 0
    classifier = model.prunable_weights()[-1]
    assert classifier not in removed or not removed[classifier].any()  # the class logits stay
    apply_masks(model, new | companion_masks(model, new))
    model.eval()
    modules, outputs = dict(model.named_modules()), {}

    def keep(layer):  # a clone: torchvision's blocks add the shortcut into the norm's output in place
        return lambda module, inputs, output: outputs.__setitem__(layer, output.clone())

    for weight in new:
        layer = weight.removesuffix(".weight")
        modules[model.norm_after().get(layer, layer)].register_forward_hook(keep(layer))
    with torch.no_grad():
        model(torch.randn(4, 3, 16, 16, generator=generator))
    for weight, gone in removed.items():
        if gone.any():
            assert outputs[weight.removesuffix(".weight")][:, gone].abs().max() == 0, weight


# --- pretrained weights from local files -------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_pretrained_weights_round_trip_from_a_local_file(tmp_path, suffix):
    source = build("resnet50", width=4, seed=1)
    path = tmp_path / f"resnet50{suffix}"
    save_file(state_of(source), path) if suffix == ".safetensors" else torch.save(source.state_dict(), path)
    loaded = build("resnet50", width=4, seed=2, weights=path)
    for key, value in state_of(source).items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_head_for_other_classes_is_reinitialised_and_the_rest_loaded(tmp_path):
    path = tmp_path / "five_classes.pt"
    source = build("resnet18", width=4, num_classes=5, seed=1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = build("resnet18", width=4, num_classes=7, seed=2, weights=path)
    fresh = build("resnet18", width=4, num_classes=7, seed=2)
    for key, value in loaded.state_dict().items():
        expected = fresh.state_dict()[key] if key.startswith("fc.") else source.state_dict()[key]
        assert torch.equal(value, expected), key


def test_a_torchvision_googlenet_checkpoint_loads_without_its_auxiliary_classifiers(tmp_path):
    ours = build("googlenet", image_size=15, num_classes=3, seed=1)
    torchvision_layout = state_of(ours) | {
        "fc.weight": torch.zeros(1000, 1024), "fc.bias": torch.zeros(1000),
        "aux1.fc2.weight": torch.zeros(1000, 1024), "aux2.conv.conv.weight": torch.zeros(128, 528, 1, 1),
    }
    path = tmp_path / "googlenet.pt"
    torch.save(torchvision_layout, path)
    loaded = build("googlenet", image_size=15, num_classes=3, seed=2, weights=path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state_of(ours).items() if not k.startswith("fc."))


def test_a_mismatched_weights_file_is_an_error_naming_the_file_and_keys(tmp_path):
    path = tmp_path / "narrow.pt"
    torch.save(build("resnet18", width=4).state_dict(), path)
    with pytest.raises(ValueError, match=r"narrow\.pt does not fit .*shape mismatch: bn1.bias \(file \(4,\), model \(8,\)\)"):
        build("resnet18", width=8, weights=path)
    imagenet_stem = _saved(build("resnet18", width=4, image_size=96), tmp_path / "big.pt")
    with pytest.raises(ValueError, match=r"conv1.weight \(file \(4, 3, 7, 7\), model \(4, 3, 3, 3\)\).*CIFAR stem"):
        build("resnet18", width=4, image_size=16, weights=imagenet_stem)
    other = _saved(build("vgg16", width=2), tmp_path / "vgg.pt")
    with pytest.raises(ValueError, match=r"vgg\.pt does not fit .*missing: bn1.bias, .*unexpected: features.0.weight"):
        build("resnet18", width=4, weights=other)


def _saved(model, path):
    torch.save(model.state_dict(), path)
    return path


def test_a_missing_or_unreadable_weights_file_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "absent.pt"
    with pytest.raises(ValueError, match="no such weights file: .*absent.pt"):
        ModelSpec(name="resnet18", weights=str(missing))
    model = build("resnet18", width=4)
    with pytest.raises(ValueError, match="model.weights: no such file: .*absent.pt"):
        load_pretrained(model, missing)
    garbage = tmp_path / "notes.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read .*notes.pt as a state dict"):
        build("resnet18", width=4, weights=garbage)


# --- the open_clip backbone --------------------------------------------------------------------

def test_clip_embeds_like_open_clip_and_exposes_vit_patches_as_a_map(tiny_clips):
    model = clip("lth-test-tiny-vit").eval()
    plain = open_clip.create_model("lth-test-tiny-vit", force_image_size=32).eval()
    plain.load_state_dict(model.clip.state_dict())
    x = torch.randn(3, 3, 32, 32)
    maps = []

    def keep(module, inputs, output):
        output.retain_grad()
        maps.append(output)

    model.gradcam_layer.register_forward_hook(keep)
    embedding = model.embed(x)
    torch.testing.assert_close(embedding, F.normalize(plain.encode_image(x), dim=-1))
    torch.testing.assert_close(model(x), model.head(model.embed(x)))
    assert maps[0].shape == (3, 64, 4, 4)  # width 64, 32 px / patch 8
    model.head(embedding).sum().backward()
    assert maps[0].grad is not None and maps[0].grad.abs().sum() > 0
    assert model.clip_model_name == "lth-test-tiny-vit"


def test_clip_prunes_image_convs_linears_and_attention_projections(tiny_clips):
    vit, resnet = clip("lth-test-tiny-vit"), clip("lth-test-tiny-rn")
    assert vit.prunable_weights() == [
        "clip.visual.conv1.weight",
        *(f"clip.visual.transformer.resblocks.{i}.{layer}" for i in range(2) for layer in (
            "attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")),
        "fc.weight",
    ]
    assert vit.channel_companions("clip.visual.transformer.resblocks.0.attn.in_proj_weight") == [
        "clip.visual.transformer.resblocks.0.attn.in_proj_bias"
    ]
    assert vit.pruned_weights()[0] == "clip.visual.transformer.resblocks.0.attn.in_proj_weight"
    assert resnet.gradcam_layer is resnet.clip.visual.layer4
    assert {f"clip.visual.attnpool.{p}_proj.weight" for p in "qkvc"} <= set(resnet.prunable_weights())
    assert resnet.norm_after()["clip.visual.layer1.0.downsample.0"] == "clip.visual.layer1.0.downsample.1"
    with torch.no_grad():
        assert resnet.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 5)  # grey images repeated to RGB


def test_clip_weights_round_trip_from_an_open_clip_checkpoint(tiny_clips, tmp_path):
    source = clip("lth-test-tiny-vit", seed=1)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in state_of(source.clip).items()}, path)
    loaded, fresh = clip("lth-test-tiny-vit", seed=2, weights=path), clip("lth-test-tiny-vit", seed=2)
    assert all(torch.equal(loaded.clip.state_dict()[k], v) for k, v in state_of(source.clip).items())
    assert torch.equal(loaded.fc.weight, fresh.fc.weight)  # the head starts fresh
    wider = clip("lth-test-tiny-vit", image_size=48, weights=path)  # open_clip resizes position embeddings
    assert wider.clip.visual.positional_embedding.shape == (1 + 6 * 6, 64)


def test_a_mismatched_clip_checkpoint_is_an_error_naming_the_file_and_keys(tiny_clips, tmp_path):
    path = tmp_path / "vit64.pt"
    torch.save(clip("lth-test-tiny-vit").clip.state_dict(), path)
    message = r"(?s)vit64\.pt does not fit open_clip lth-test-tiny-vit-wide: .*size mismatch for visual.conv1.weight"
    with pytest.raises(ValueError, match=message):
        clip("lth-test-tiny-vit-wide", weights=path)
