"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no download).

A tiny real-image sanity dataset: no concepts, no masks, no OOD split.

Split rule (deterministic in ``spec.seed``): the images are shuffled once,
the test split takes ``min(spec.test_size, 20% of the data)`` = at most 359
images, and the train split takes ``min(spec.train_size, the rest)`` = at most
1438 images. Oversized requests therefore shrink silently instead of failing,
and train and test never overlap.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .describe import Description, Generated
from .splits import Dataset, ImageSplit, make_generator

# Fixed constants (pixel/16 over the whole set) so normalisation is data-independent.
MEAN, STD = 0.3053, 0.3760
IMAGES = 1_797  #: scikit-learn's digits: the whole set, split here into train and test


def split_sizes(spec: Any) -> tuple[int, int]:
    """(train, test) images: the test split takes at most a fifth of the set, train the rest."""
    n_test = max(1, min(int(spec.test_size), IMAGES // 5))
    return max(1, min(int(spec.train_size), IMAGES - n_test)), n_test


def describe(spec: Any) -> Description:
    train, test = split_sizes(spec)
    return Description(1, int(spec.image_size), 10, train, test)


def load(spec: Any) -> Dataset:
    from sklearn.datasets import load_digits  # imported lazily: sklearn is slow to import

    raw = load_digits()
    images = torch.as_tensor(raw.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.as_tensor(raw.target, dtype=torch.int64)
    size = int(spec.image_size)
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images - MEAN) / STD

    order = torch.randperm(len(labels), generator=make_generator(int(spec.seed), "digits/split"))
    n_train, n_test = split_sizes(spec)
    test_idx, train_idx = order[:n_test], order[n_test : n_test + n_train]
    return Dataset(
        name="digits",
        train=ImageSplit(images[train_idx].contiguous(), labels[train_idx]),
        test=ImageSplit(images[test_idx].contiguous(), labels[test_idx]),
        ood=None,
        class_names=[str(d) for d in range(10)],
        concept_names=[],
        class_concepts=[[] for _ in range(10)],
        mean=(MEAN,),
        std=(STD,),
    )


DATASET = Generated(load, describe)
