"""The tiny real sweep the browser tests look at (tests/infrastructure: `ui_sweep`, `ui`), and
where they leave their screenshots."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The browser tests' sweep: the quickstart's six methods, so that runs nest, charts compare and
#: the comparison view groups (and colours) as many methods as a user's first sweep has.
UI_ROUNDS = 2
UI_TRUNK = "trunk conv2 shapes s0"
UI_LINEAGES = ("imp s0", "imp@3 s0", "imp+reinit s0", "omp s0", "random s0", "snip s0")
UI_CONFIG = f"""
name: ui
seeds: [0]
data: {{image_size: 16, train_size: 256, test_size: 128, ood_size: 0}}
model: {{name: conv2, width: 4}}
train: {{epochs: 1, batch_size: 32, lr: 0.01}}
pruning:
  - {{rate: 0.5, rounds: {UI_ROUNDS}, rewind: init}}
  - {{rate: 0.5, rounds: {UI_ROUNDS}, rewind: 3}}
  - {{rate: 0.5, rounds: {UI_ROUNDS}, rewind: init, reinit: true}}
  - {{method: omp, rate: 0.5, rounds: {UI_ROUNDS}}}
  - {{method: random, rate: 0.5, rounds: {UI_ROUNDS}}}
  - {{method: snip, rate: 0.5, rounds: {UI_ROUNDS}}}
analysis: {{gradcam: {{images: 32}}, concepts: {{train_images: 100, eval_images: 50}}, robustness: {{images: 32}},
           mis: {{images: 60}}, lime: {{images: 2}}, flatness: {{images: 16}}}}
tracking: {{uri: "sqlite:///mlflow.db", experiment: ui-test}}
"""


@dataclass
class UiSweep:
    workdir: Path
    experiment_id: str
    runs: dict  # run name -> run, and "parent" -> the sweep's run
    data_id: str  # the data spec's id, the lineages' dataset digest


#: Where the browser tests leave their screenshots (git-ignored; CI collects them)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
