"""An open_clip image tower with a linear classifier: `embed(x)` is CLIP's L2-normalised image
embedding, the joint image-text space, so a concept bank of CLIP text embeddings lives in the same
space as the embeddings PCBM reads. `head` is a linear layer on it. `.clip` is the open_clip model
(text tower included, for concept banks), `.clip_model_name` its open_clip config name.

Pruning sees the image tower only: its conv and linear weights, and the fused query/key/value
projections of its attention layers. The text tower and the logit scale are neither prunable nor
trained (requires_grad off): they define the concept space, and the classifier never uses them.
The ViT's final projection into the joint space is a bare matrix (width x embedding, stored
transposed) and is not pruned. The stem (`visual.conv1`: the ViT's patch embedding, the
ModifiedResNet's first conv) is left dense by default, as in ViT pruning work and for the ResNets.

Weights: `weights` is a local open_clip checkpoint of the CLIP model (no classifier), read by
open_clip itself with a strict key check (`pretrained=<path>`); the head always starts fresh.
open_clip interpolates a ViT's position embeddings to the image size, but not the attention-pool
embedding of a ModifiedResNet: RN checkpoints load only at their own image size (224 for RN50).

Grad-CAM: a ModifiedResNet's last map is `visual.layer4`. A ViT has tokens, not maps: the patch
tokens entering its last block pass through `patch_map`, an identity on the (N, width, h, w) grid,
so the grid is a module output on the path to the logits. (The last block's output tokens would
not do: only the class token is read after it, so their gradients are zero.)

open_clip (and timm, which it imports: ~0.45 s) is imported when a CLIP model is built, not when
the model registry is: trial workers and analysis actors of other models never load it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lth_sweep.trainables.models.base import PrunableModel, conventional_norm_pairs
from lth_sweep.trainables.models.inputs import as_rgb, require_image_size, require_rgb_or_grey
from lth_sweep.trainables.models.pretrained import brief

#: a ModifiedResNet halves the image five times before its attention pool
RESNET_STRIDE = 32


def _minimum_size(name: str, vision: dict) -> int:
    if "timm_model_name" in vision:
        raise ValueError(
            f"open_clip model {name!r} has a timm image tower; only CLIP ViTs and ModifiedResNets are supported"
        )
    if isinstance(vision["layers"], int):
        return vision["patch_size"]
    return RESNET_STRIDE


class OpenClipClassifier(PrunableModel):
    default_excluded = ("clip.visual.conv1.weight",)

    def __init__(
        self, *, clip_model_name: str, in_channels: int, image_size: int, num_classes: int, weights: str | None = None
    ):
        super().__init__()
        import open_clip
        from open_clip.transformer import VisionTransformer

        if clip_model_name.startswith(("hf-hub:", "local-dir:")):
            raise ValueError(f"open_clip model {clip_model_name!r}: give a config name, not a schema")
        config = open_clip.get_model_config(clip_model_name)
        if config is None:
            known = ", ".join(open_clip.list_models())
            raise ValueError(f"open_clip has no model config {clip_model_name!r}; known: {known}")
        require_image_size(clip_model_name, image_size, _minimum_size(clip_model_name, config["vision_cfg"]))
        require_rgb_or_grey(clip_model_name, in_channels)
        if weights is not None and not Path(weights).is_file():  # open_clip would download a tag name
            raise ValueError(f"model.weights: no such file: {weights}")
        try:
            self.clip = open_clip.create_model(
                clip_model_name, pretrained=weights, force_image_size=image_size, pretrained_text=False
            )
        except Exception as error:  # noqa: BLE001 - open_clip raises several types for a bad file
            if weights is None:
                raise
            raise ValueError(f"model.weights: {weights} does not fit open_clip {clip_model_name}: {brief(error)}") from error
        self.clip_model_name = clip_model_name
        for name, param in self.clip.named_parameters():
            if not name.startswith("visual."):
                param.requires_grad_(False)
        self.fc = nn.Linear(config["embed_dim"], num_classes)
        if isinstance(self.clip.visual, VisionTransformer):
            self.patch_map = nn.Identity()
            self.clip.visual.transformer.resblocks[-1].register_forward_pre_hook(self._patch_tokens_through_map)

    def _patch_tokens_through_map(self, block: nn.Module, args: tuple) -> tuple | None:
        tokens, height, width = args[0], *self.clip.visual.grid_size
        if tokens.shape[1] != 1 + height * width:  # patch dropout (training only) leaves no grid
            return None
        grid = tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
        return (torch.cat([tokens[:, :1], self.patch_map(grid).flatten(2).transpose(1, 2)], dim=1), *args[1:])

    def prunable_weights(self) -> list[str]:
        names = []
        for name, module in self.named_modules():
            if not (name.startswith("clip.visual.") or name == "fc"):
                continue
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                names.append(f"{name}.weight")
            elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
                names.append(f"{name}.in_proj_weight")
        return names

    def channel_companions(self, weight_name: str) -> list[str]:
        if weight_name.endswith(".in_proj_weight"):
            bias = weight_name.removesuffix("weight") + "bias"
            return [bias] if bias in dict(self.named_parameters()) else []
        return super().channel_companions(weight_name)

    def norm_after(self) -> dict[str, str]:
        return conventional_norm_pairs(self.clip.visual, prefix="clip.visual")

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.patch_map if hasattr(self, "patch_map") else self.clip.visual.layer4

    def embed(self, x):
        return F.normalize(self.clip.encode_image(as_rgb(x)), dim=-1)
