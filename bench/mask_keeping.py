"""Keeping masks through optimizer steps: one multiply per pruned layer vs one fused multi-tensor
multiply for all layers (`MaskKeeper`), for ResNet-20 at 32 px, batch 128, SGD with momentum.

    python bench/mask_keeping.py [--model resnet20] [--image-size 32] [--batch 128] [--threads 1] [--compile]
    python bench/mask_keeping.py --processes 2      # per process and in aggregate, N processes at once

Prints (a) the mask keeping alone per step (both multiplies, grads and weights), and (b) training
iterations per second with each keeper. On a GPU, each multiply is one kernel launch, so (a) is
what a launch-bound small network pays per step; on a CPU it is a loop of small multiplies.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch

from lth_sweep.trainables.masks import MaskKeeper, apply_masks, dense_masks
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import ModelSpec


class PerLayerKeeper:
    """The previous keeper: one multiply per pruned layer, grads then weights."""

    def __init__(self, model, masks):
        params = dict(model.named_parameters())
        self.pairs = [(params[name], mask) for name, mask in masks.items()]

    @torch.no_grad()
    def before_step(self):
        for param, mask in self.pairs:
            param.grad.mul_(mask)

    @torch.no_grad()
    def after_step(self):
        for param, mask in self.pairs:
            param.mul_(mask)


def setup(args, device):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name=args.model), in_channels=3, image_size=args.image_size, num_classes=10).to(device)
    masks = dense_masks(model, model.pruned_weights())
    for mask in masks.values():
        mask.copy_(torch.rand(mask.shape) > 0.8)
    masks = {name: mask.to(device) for name, mask in masks.items()}
    apply_masks(model, masks)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    return model, masks, optimizer, x, y


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def keeping_seconds(keeper, device, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        keeper.before_step()
        keeper.after_step()
    sync(device)
    return (time.perf_counter() - start) / repeats


def iterations_per_second(args, keeper_class, device, compiled: bool = False) -> float:
    model, masks, optimizer, x, y = setup(args, device)
    keeper = keeper_class(model, masks)
    if compiled:
        model = torch.compile(model)

    def step():
        optimizer.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        keeper.before_step()
        optimizer.step()
        keeper.after_step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return args.steps / (time.perf_counter() - start)


KEEPERS = {"per layer": PerLayerKeeper, "fused": MaskKeeper}


def _one_process(args, keeper: str, start, results) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start.wait()  # every process trains at the same time
    results.put(iterations_per_second(args, KEEPERS[keeper], device))


def in_parallel(args, keeper: str) -> list[float]:
    """Iterations/s of each of `args.processes` processes training at once (spawned, one thread each
    unless --threads says otherwise)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(args.processes), context.Queue()
    workers = [context.Process(target=_one_process, args=(args, keeper, start, results)) for _ in range(args.processes)]
    for worker in workers:
        worker.start()
    speeds = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the model")
    parser.add_argument("--processes", type=int, default=0, help="N > 0: N processes training at once")
    args = parser.parse_args()
    if args.processes:
        for name in KEEPERS:
            speeds = in_parallel(args, name)
            print(f"{name:10} {args.processes} process(es) at once: "
                  f"{', '.join(f'{speed:.2f}' for speed in speeds)} it/s each, {sum(speeds):.2f} it/s in all")
        return
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, masks, *_ = setup(args, device)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    print(f"{args.model} at {args.image_size} px, batch {args.batch}, {len(masks)} pruned layers, {device}, "
          f"{args.threads} thread(s)")
    for name, keeper_class in KEEPERS.items():
        keeper = keeper_class(model, masks)
        keeping = statistics.median(keeping_seconds(keeper, device, 200) for _ in range(args.repeats))
        speed = statistics.median(iterations_per_second(args, keeper_class, device) for _ in range(args.repeats))
        print(f"{name:10} mask keeping {keeping * 1e6:8.1f} us/step   training {speed:7.2f} it/s")
    if args.compile:
        start = time.perf_counter()
        speed = statistics.median(iterations_per_second(args, MaskKeeper, device, compiled=True) for _ in range(args.repeats))
        print(f"fused + torch.compile(model): training {speed:7.2f} it/s "
              f"({time.perf_counter() - start:.0f} s with compilation, {args.repeats} repeats)")


if __name__ == "__main__":
    main()
