"""Concept banks for CLIP image backbones: the concepts are CLIP's own text embeddings of their names
(as PCBM does for CLIP), so no concept annotations are needed.

When a lineage prunes the image tower, the text tower stays the dense one: the bank is computed once
and every round's image embeddings are projected onto the same joint-space directions.
Nothing here downloads: models are built from open_clip's bundled configs, weights only from a local
file, and the default tokenizer's BPE vocabulary ships inside the open_clip package.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from lth_sweep.analysis.concepts import ConceptBank, embeddings
from lth_sweep.analysis.device import model_device

DEFAULT_TEMPLATE = "a photo of a {}"


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
        vectors = clip_model.encode_text(tokenizer(prompts).to(model_device(clip_model))).double().cpu().numpy()
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
