"""How hard a dataset is: test accuracy of a config's dense trunks (seed 0 by default), trained as a
sweep would, one thread each, in one process after another.

    python bench/dense_accuracy.py --config configs/clutter.yaml
    python bench/dense_accuracy.py --config configs/clutter-gpu.yaml --set train.device=cpu \
        --set train.precision=fp32 --set resources.gpus_per_trial=0 --set analysis.gpus_per_actor=0
    python bench/dense_accuracy.py --set data.name=shapes --set data.image_size=32 ...  # the saturated one

Prints, per trunk, its test accuracy, its test loss and the seconds its training took.
"""
from __future__ import annotations

import torch

from quickstart_config import config_parser


def main() -> None:
    from lth_sweep.orchestrator.config import load_config
    from lth_sweep.orchestrator.plan import make_plan
    from lth_sweep.trainables.trunk import train_trunk

    parser = config_parser()
    parser.add_argument("--seeds", default="[0]", help="the config's seeds to train, e.g. [0,1]")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config, [f"seeds={args.seeds}", *args.overrides])
    for trunk, _ in make_plan(config).trunks.values():
        result = train_trunk(trunk)
        print(f"{trunk.model.name} on {trunk.data.name} at {trunk.data.image_size} px, {trunk.data.train_size} images, "
              f"{trunk.train.epochs} epochs, seed {trunk.seed}: test/acc {result.metrics['test/acc']:.4f}  "
              f"test/loss {result.metrics['test/loss']:.3f}  ({result.seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
