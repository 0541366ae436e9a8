"""Several lineages batched on one device: K masked copies of a network trained as one program
(`torch.func.stack_module_state` + `vmap` over `functional_call`) against the same K trained one
after the other, as K trials sharing a device do.

    python bench/batched_lineages.py [--model resnet20] [--image-size 32] [--batch 128] [--lineages 1 2 4 8]
    python bench/batched_lineages.py --model conv4 --width 16 --image-size 16 --batch 64 --classes 20   # the quickstart's network

Each lineage has its own weights, masks (80% sparsity, different per lineage), batches and SGD
momentum; the batched step sums the K losses, so each copy gets exactly its own gradient. Prints
iterations/s of all K lineages together both ways (one iteration = one step of every lineage),
and how far the batched copies drift from their separately trained selves over `--steps` steps.
vmap runs a convolution over K copies as one grouped convolution, whose sums are ordered
differently: the same within float rounding, not bit for bit. How far rounding alone carries is
printed beside it: the same separate training with every kept weight changed by one part in 10^7
after its first step (randomly masked networks amplify it: channels left with almost no variance
are divided by almost nothing in BatchNorm).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.func import functional_call, stack_module_state

from lth_sweep.trainables.masks import MaskKeeper, apply_masks, dense_masks
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import ModelSpec


def lineages(args, count: int, device) -> list[tuple[torch.nn.Module, dict, torch.Tensor, torch.Tensor]]:
    """`count` copies of one network (as lineages of one trunk), each with its own mask and batch."""
    torch.manual_seed(0)
    spec = ModelSpec(name=args.model, **({"width": args.width} if args.width else {}))
    trunk = build_model(spec, in_channels=3, image_size=args.image_size, num_classes=args.classes)
    made = []
    for index in range(count):
        model = copy.deepcopy(trunk).to(device)
        generator = torch.Generator().manual_seed(index)
        masks = dense_masks(model, model.pruned_weights())
        for mask in masks.values():
            mask.copy_(torch.rand(mask.shape, generator=generator) > 0.8)
        masks = {name: mask.to(device) for name, mask in masks.items()}
        apply_masks(model, masks)
        x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=generator).to(device)
        y = torch.randint(0, args.classes, (args.batch,), generator=generator).to(device)
        made.append((model, masks, x, y))
    return made


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def optimizer_for(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


class OneAfterAnother:
    """K lineages, each its own model, optimizer and mask keeper, stepped in turn."""

    def __init__(self, made):
        self.models = [model for model, *_ in made]
        self.parts = [(model, MaskKeeper(model, masks), optimizer_for(model.parameters()), x, y)
                      for model, masks, x, y in made]

    def step(self) -> None:
        for model, keeper, optimizer, x, y in self.parts:
            optimizer.zero_grad(set_to_none=False)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            keeper.before_step()
            optimizer.step()
            keeper.after_step()

    def weights(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value.detach() for name, value in self.models[index].named_parameters()}

    @torch.no_grad()
    def nudge(self) -> None:
        """Every kept weight times (1 + 1e-7): a change of float32's rounding size."""
        for model in self.models:
            for param in model.parameters():
                param.mul_(1 + 1e-7 * (param != 0))


class Batched:
    """K lineages as one program: parameters and buffers stacked along a new first dimension,
    one vmapped forward and backward, one optimizer and one fused mask multiply for all."""

    def __init__(self, made):
        models = [model for model, *_ in made]
        params, buffers = stack_module_state(models)
        self.params = {name: value.detach().requires_grad_() for name, value in params.items()}
        self.buffers = buffers  # BatchNorm's running statistics, updated in place per copy
        self.base = copy.deepcopy(models[0]).to("meta")
        masks = {name: torch.stack([masks[name] for _, masks, _, _ in made]) for name in made[0][1]}
        self.keeper_params = [self.params[name] for name in masks]
        self.masks = list(masks.values())
        self.x = torch.stack([x for *_, x, _ in made])
        self.y = torch.stack([y for *_, y in made])
        self.optimizer = optimizer_for(self.params.values())

        def loss(params, buffers, x, y):
            return torch.nn.functional.cross_entropy(functional_call(self.base, (params, buffers), (x,)), y)

        self.losses = torch.vmap(loss, in_dims=(0, 0, 0, 0))

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=False)
        self.losses(self.params, self.buffers, self.x, self.y).sum().backward()
        with torch.no_grad():
            torch._foreach_mul_([p.grad for p in self.keeper_params], self.masks)
            self.optimizer.step()
            torch._foreach_mul_(self.keeper_params, self.masks)

    def weights(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value[index].detach() for name, value in self.params.items()}


def iterations_per_second(trainer, steps: int, device) -> float:
    for _ in range(2):  # warm-up
        trainer.step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    sync(device)
    return steps / (time.perf_counter() - start)


@torch.no_grad()
def drift(a, b, count: int) -> float:
    """The largest relative difference between the two trainers' weights, over every lineage."""
    worst = 0.0
    for index in range(count):
        left, right = a.weights(index), b.weights(index)
        for name, value in left.items():
            scale = value.abs().max().clamp_min(1e-12)
            worst = max(worst, float((value - right[name]).abs().max() / scale))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--width", type=int, default=0, help="the model's width (0: its default)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--lineages", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{args.model} at {args.image_size} px, batch {args.batch}, {device}, {args.threads} thread(s); "
          f"iterations/s of K lineages together (one iteration = one step of each)")
    for count in args.lineages:
        sequential = statistics.median(
            iterations_per_second(OneAfterAnother(lineages(args, count, device)), args.steps, device) for _ in range(args.repeats))
        batched = statistics.median(
            iterations_per_second(Batched(lineages(args, count, device)), args.steps, device) for _ in range(args.repeats))
        one, together = OneAfterAnother(lineages(args, count, device)), Batched(lineages(args, count, device))
        nudged = OneAfterAnother(lineages(args, count, device))
        for step in range(args.steps):
            for trainer in (one, together, nudged):
                trainer.step()
            if step == 0:
                nudged.nudge()
        print(f"K={count:2}  one after another {sequential:7.2f} it/s   batched {batched:7.2f} it/s   "
              f"({batched / sequential:.2f}x)   largest relative weight difference after {args.steps} steps: "
              f"batched {drift(one, together, count):.1e}, rounding alone {drift(one, nudged, count):.1e}")


if __name__ == "__main__":
    main()
