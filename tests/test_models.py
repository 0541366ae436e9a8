"""The model registry: every model builds, runs, and declares what it prunes."""
import pytest
import torch

from trainables.models import MODELS, build_model
from trainables.specs import ModelSpec


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("in_channels,image_size", [(3, 16), (1, 8)])
def test_every_model_maps_images_to_logits(name, in_channels, image_size):
    model = build_model(ModelSpec(name=name), in_channels=in_channels, image_size=image_size, num_classes=7)
    assert model(torch.zeros(2, in_channels, image_size, image_size)).shape == (2, 7)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_prunable_weights_are_conv_and_linear_weights_only(name):
    model = build_model(ModelSpec(name=name), in_channels=3, image_size=16, num_classes=9)
    params = dict(model.named_parameters())
    prunable = model.prunable_weights()
    assert prunable and all(name.endswith("weight") and params[name].dim() in (2, 4) for name in prunable)
    norms = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))]
    assert not any(p.startswith(tuple(f"{n}." for n in norms)) for p in prunable)
    assert set(model.pruned_weights()) == set(prunable) - set(model.default_excluded)


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
