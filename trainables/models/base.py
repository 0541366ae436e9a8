"""What every registered model declares to the pruning code."""
from __future__ import annotations

from torch import nn


class PrunableModel(nn.Module):
    """A network split as `head(embed(x))`: `embed` gives the penultimate representation (what
    concept banks and PCBMs read), `head` is the final linear classifier. `gradcam_layer` is the
    module whose activations Grad-CAM weighs (the last spatial feature map), None for MLPs."""

    #: weight names never pruned unless the config says otherwise (e.g. a tiny stem conv)
    default_excluded: tuple[str, ...] = ()

    def embed(self, x):
        raise NotImplementedError

    @property
    def head(self) -> nn.Module:
        return self.fc

    @property
    def gradcam_layer(self) -> nn.Module | None:
        return None

    def forward(self, x):
        return self.head(self.embed(x))

    def prunable_weights(self) -> list[str]:
        """Weights of conv and linear layers, in definition order; biases and norms never count."""
        return [
            f"{name}.weight"
            for name, module in self.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))
        ]

    def pruned_weights(self, exclude: tuple[str, ...] | None = None) -> list[str]:
        """The weights a lineage prunes: the prunable ones less the exclusions."""
        exclude = self.default_excluded if exclude is None else exclude
        names = self.prunable_weights()
        unknown = sorted(set(exclude) - set(names))
        if unknown:
            raise ValueError(
                f"pruning.exclude names weights this model does not have: {unknown}; "
                f"prunable weights: {names}"
            )
        return [name for name in names if name not in exclude]

    def norm_after(self) -> dict[str, str]:
        """Conv/linear module name -> the norm layer that normalises its outputs, if any."""
        return {}

    def channel_companions(self, weight_name: str) -> list[str]:
        """Parameters indexed by the output channels of `weight_name`: its own bias and the affine
        parameters of the norm layer after it. Removing a whole filter removes these entries too;
        otherwise the "removed" channel would still emit a constant."""
        module = weight_name.removesuffix(".weight")
        params = dict(self.named_parameters())
        names = [f"{module}.bias"]
        norms = self.norm_after()
        if module in norms:
            names += [f"{norms[module]}.weight", f"{norms[module]}.bias"]
        return [name for name in names if name in params]


def conventional_norm_pairs(root: nn.Module, prefix: str = "") -> dict[str, str]:
    """Conv -> BatchNorm pairs by the naming of torchvision and open_clip: a sibling `bn<K>`
    normalises `conv<K>` (K may be empty), and in a Sequential a norm right after a conv normalises
    it. Only for post-activation networks, where each such norm reads its conv's output alone;
    pre-activation blocks (WideResNet) name their norms differently and declare pairs themselves."""
    pairs = {}
    for name, module in root.named_modules(prefix=prefix):
        children = list(module.named_children())
        candidates = list(zip(children, children[1:])) if isinstance(module, nn.Sequential) else []
        siblings = dict(children)
        candidates += [
            ((child, conv), (f"bn{child[4:]}", siblings.get(f"bn{child[4:]}")))
            for child, conv in children
            if child.startswith("conv")
        ]
        for (conv_name, conv), (norm_name, norm) in candidates:
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(norm, nn.BatchNorm2d)
                and norm.num_features == conv.out_channels
            ):
                pairs[f"{name}.{conv_name}" if name else conv_name] = f"{name}.{norm_name}" if name else norm_name
    return pairs
