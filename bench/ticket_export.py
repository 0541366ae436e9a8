"""A filter-pruned ticket exported masked and slim (`lth export ... --slim`): file sizes and CPU
latency of each format, in one process, no Ray and no MLflow.

    python bench/ticket_export.py --set model.width=64 --set train.epochs=4   # the paper's Conv-4 width
    python bench/ticket_export.py --set model.name=resnet20 --set train.epochs=4

The quickstart's seed-0 trunk is trained, then a `filter` lineage prunes it (`--rate` 0.6 for
`--rounds` 2, `--scope` layerwise: 84% of each pruned layer's filters removed, the classifier's
outputs kept). Its last
round goes through the exporter's own code path (`export.export.prepare` + `write`),
masked and slim, in all three formats. Latency: one thread, the median of `--repeats` forward passes after 5
warm-up passes, at batch 1 and batch 64, for the network loaded back from each file (eager torch
from the safetensors export through its load_ticket.py, TorchScript, onnxruntime).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from quickstart_config import config_parser, seed0_trunk


def median_ms(forward, images: torch.Tensor, repeats: int) -> float:
    for _ in range(5):
        forward(images)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        forward(images)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def runners(kind: str, path: Path):
    """A function images -> logits for the export at `path`, loaded as a user would."""
    if kind == "safetensors":
        from lth_sweep.export import ticket_loader

        model = ticket_loader.load(path)
        return lambda x: model(x)
    if kind == "torchscript":
        model = torch.jit.load(str(path))
        return lambda x: model(x)
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x.numpy()})


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.safetensors")) if path.is_dir() else path.stat().st_size


def main() -> None:
    import warnings

    from lth_sweep.orchestrator.mlflow_runs import flatten
    from lth_sweep.export.export import prepare, write
    from lth_sweep.export.lineage_run import LineageRun
    from lth_sweep.trainables.lineage import run_lineage
    from lth_sweep.trainables.specs import LineageSpec
    from lth_sweep.trainables.trunk import cached_dataset, train_trunk

    warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation
    parser = config_parser()
    parser.add_argument("--rate", type=float, default=0.6)
    parser.add_argument("--rounds", type=int, default=2)
    # global filter pruning empties whole layers of Conv-4 at this sparsity (a chance-level ticket)
    parser.add_argument("--scope", choices=["layerwise", "global"], default="layerwise")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, trunk_spec, _ = seed0_trunk(args.config, args.overrides)
    pruning = {"method": "filter", "rate": args.rate, "rounds": args.rounds, "scope": args.scope}
    spec = LineageSpec(trunk=trunk_spec, pruning=pruning)
    started = time.perf_counter()
    trunk = train_trunk(trunk_spec, ())
    last = run_lineage(spec, trunk)[-1]
    print(f"trained trunk + {args.rounds} rounds in {time.perf_counter() - started:.0f} s: test/acc {last.metrics['test/acc']:.4f} "
          f"(dense {trunk.metrics['test/acc']:.4f}), "
          f"sparsity {last.metrics['sparsity']:.3f} effective, {last.metrics['sparsity/masked']:.3f} masked")
    lineage = LineageRun(
        run_id="-", lineage_id=spec.id, label=spec.pruning.label, method="filter", seed=trunk_spec.seed, status="FINISHED",
        params=flatten(spec.model_dump(mode="json")), rounds={args.rounds: last.metrics}, sweep="bench", sweep_id="-",
        parent_run_id="-", trunk_id=trunk_spec.id,
    )
    dataset = cached_dataset(trunk_spec.data)
    batch = {size: dataset.test.batch(slice(0, size))[0] for size in (1, 64)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("safetensors", "torchscript", "onnx"):
            for slim in (False, True):
                ticket = prepare(lineage, args.rounds, False, last.evaluated, last.evaluated_masks,
                                 export_format=kind, slim=slim, dataset=dataset)
                path = write(ticket, Path(tmp) / f"{kind}-{slim}", force=False)
                forward = runners(kind, path)
                with torch.no_grad():
                    ms = {size: median_ms(forward, images, args.repeats) for size, images in batch.items()}
                rows.append((kind, "slim" if slim else "masked", ticket.metadata["parameters"], size_of(path), ms[1], ms[64]))
                print(f"{rows[-1][0]:12s} {rows[-1][1]:7s} done", flush=True)
    model = spec.trunk.model
    print(f"\n{model.name} width {model.width}, {spec.trunk.data.image_size} px, filter rate {args.rate} x {args.rounds} rounds ({args.scope}); "
          f"latency: median of {args.repeats}, 1 thread\n")
    print("| format | network | parameters | file (weights) | batch 1 | batch 64 |")
    print("|---|---|---|---|---|---|")
    for kind, network, parameters, size, one, many in rows:
        print(f"| {kind} | {network} | {parameters:,} | {size / 1024:,.1f} KiB | {one:.3f} ms | {many:.2f} ms |")


if __name__ == "__main__":
    main()
