"""Grad-CAM throughput: batched `gradcam_maps` (one forward/backward per batch) against a loop of
one image per call, on a Conv-4 of width 16 at 16 px.

    python bench/gradcam_throughput.py [--images 512] [--repeats 3]

Prints images/second of both and their ratio (batched: best of `repeats`; the loop runs once,
it is slow) and checks the maps agree.
"""
from __future__ import annotations

import argparse
import time

import torch

from lth_sweep.analysis.gradcam import gradcam_maps
from lth_sweep.trainables.data.shapes import generate
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import ModelSpec


def best_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = generate(args.images, 16, torch.Generator().manual_seed(0))
    model = build_model(ModelSpec(name="conv4", width=16), in_channels=3, image_size=16, num_classes=9)
    images, targets = data.images, data.labels

    gradcam_maps(model, images[:8], targets[:8])  # warm-up (lazy imports, allocator)
    started = time.perf_counter()
    looped = torch.cat([gradcam_maps(model, images[i : i + 1], targets[i : i + 1]) for i in range(len(targets))])
    slow = time.perf_counter() - started
    fast = best_seconds(lambda: gradcam_maps(model, images, targets), args.repeats)
    batched = gradcam_maps(model, images, targets)
    assert torch.allclose(batched, looped, atol=1e-5, rtol=1e-4), "batched and per-image maps differ"
    n = len(targets)
    print(f"batched   : {n / fast:10.0f} images/s ({fast * 1e3:.1f} ms for {n})")
    print(f"per-image : {n / slow:10.0f} images/s ({slow * 1e3:.1f} ms for {n})")
    print(f"ratio     : {slow / fast:10.1f}x  (torch threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
