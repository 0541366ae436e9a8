"""Concept banks for CLIP image backbones: the concepts are CLIP's own text embeddings of their names
(as PCBM does for CLIP), so no concept annotations are needed.

When a lineage prunes the image tower, the text tower stays the dense one: the bank is computed once
and every round's image embeddings are projected onto the same joint-space directions.
Nothing here downloads: models are built from open_clip's bundled configs, weights only from a local
file, and the default tokenizer's BPE vocabulary ships inside the open_clip package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import open_clip
import torch
from torch import nn

from analysis.concepts import ConceptBank, embeddings

DEFAULT_TEMPLATE = "a photo of a {}"


def load_open_clip(model_name: str, weights_path: str | None = None) -> tuple[nn.Module, Callable]:
    """`(model, tokenizer)` of a registered open_clip architecture, in eval mode: weights from the
    local `weights_path`, or random when None. Refuses names and towers that would fetch from a hub."""
    if ":" in model_name:
        raise ValueError(f"open_clip model {model_name!r}: only registered names, no hf-hub:/local-dir: schemas")
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    text = config.get("text_cfg", {})
    if "hf_model_name" in text or "hf_tokenizer_name" in text or "siglip" in model_name.lower():
        raise ValueError(f"open_clip model {model_name!r} needs a Hugging Face text tower or tokenizer (downloads)")
    pretrained = None
    if weights_path is not None:
        path = Path(weights_path).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such open_clip weights file: {path}")
        pretrained = str(path)
    model = open_clip.create_model(
        model_name,
        pretrained=pretrained,
        pretrained_image=False,
        pretrained_text=False,
        require_pretrained=pretrained is not None,
    )
    return model.eval(), open_clip.get_tokenizer(model_name)


@torch.no_grad()
def clip_text_bank(
    clip_model: nn.Module,
    tokenizer: Callable,
    concept_names: Sequence[str],
    template: str = DEFAULT_TEMPLATE,
) -> ConceptBank:
    """Unit text embeddings of `template.format(name)` (underscores read as spaces), one per concept.

    There is no held-out check of a text concept, so its accuracies are NaN.
    """
    prompts = [template.format(name.replace("_", " ")) for name in concept_names]
    was_training = clip_model.training
    clip_model.eval()
    try:
        vectors = clip_model.encode_text(tokenizer(prompts)).double().cpu().numpy()
    finally:
        clip_model.train(was_training)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    missing = np.full(len(prompts), np.nan)
    return ConceptBank(
        names=list(concept_names),
        vectors=vectors,
        mean=None,
        scale=None,
        accuracies=missing,
        balanced_accuracies=missing.copy(),
        skipped=[],
    )


def image_embeddings(clip_model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """CLIP image embeddings (N, embed_dim); `images` already in the model's input normalisation."""
    return embeddings(clip_model, images, batch_size, embed=clip_model.encode_image)
