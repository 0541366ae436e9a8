"""Calibrates the dry run's analysis cost model (`orchestrator.estimate_analysis.analysis_cost`): one
round's analysis, per dimension, against what the model predicts.

    python bench/analysis_cost.py                                   # the quickstart's network and analysis
    python bench/analysis_cost.py --set analysis.gradcam.images=256  # any analysis spec
    python bench/analysis_cost.py --set model.name=resnet20 --set data.image_size=32 --set train.epochs=2

Trains the config's seed-0 trunk, measures its dense reference, then a round (the trunk's weights
with half of each layer's weights masked at random; on one thread, as an actor with
cpus_per_actor <= 1) and prints per dimension: the seconds measured, the forward-pass equivalents
and sampled images the model counts, and the seconds the model predicts from them
(each dimension's `cost`, `analysis/dimensions/<name>.py`: a rate, seconds per image, fixed seconds;
three such runs solve for them).
"""
from __future__ import annotations

import time

import torch

from quickstart_config import config_parser, seed0_trunk


def main() -> None:
    from lth_sweep.analysis.actors import Analyzer
    from lth_sweep.orchestrator import estimate, estimate_analysis
    from lth_sweep.orchestrator.plan import make_plan
    from lth_sweep.trainables.data.describe import describe
    from lth_sweep.trainables.trunk import train_trunk

    args = config_parser().parse_args()
    torch.set_num_threads(1)
    config, trunk, rewinds = seed0_trunk(args.config, args.overrides)
    started = time.perf_counter()
    result = train_trunk(trunk, rewinds)
    print(f"trunk: {trunk.model.name} at {trunk.data.image_size} px, trained in {time.perf_counter() - started:.1f} s "
          f"(test/acc {result.metrics['test/acc']:.3f})")
    analyzer = Analyzer(config.analysis)
    _, reference, _ = analyzer.reference(trunk, result.final)  # and fills the actor's caches, as in a sweep
    generator = torch.Generator().manual_seed(1)
    masks = {
        name: (torch.rand(array.shape, generator=generator) > 0.5).numpy()
        for name, array in result.final.items() if name.endswith("weight") and array.ndim > 1
    }
    weights = {name: array * masks[name] if name in masks else array for name, array in result.final.items()}
    lineage = make_plan(config).lineages[0]
    metrics, _ = analyzer.analyze(lineage, reference, 1, weights, masks)

    macs = estimate.forward_macs(trunk.model, describe(trunk.data))
    cost = estimate_analysis.analysis_cost(config.analysis, trunk.data)
    print(f"{macs / 1e6:.1f}M MACs per image")
    print(f"{'dimension':12s} {'measured s':>10s} {'passes':>8s} {'images':>6s} {'modelled s':>10s}")
    for name, passes in cost.passes.items():
        alone = estimate_analysis.AnalysisCost({name: passes}, {name: cost.images[name]})
        print(f"{name:12s} {metrics[f'analysis/seconds/{name}']:10.3f} {passes:8.0f} {cost.images[name]:6d} {alone.seconds(macs):10.3f}")
    print(f"{'total':12s} {metrics['analysis/seconds']:10.3f} {'':8s} {'':6s} {cost.seconds(macs):10.3f}")

if __name__ == "__main__":
    main()
