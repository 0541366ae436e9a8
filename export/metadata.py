"""What every export says about itself, in every format: which ticket it is (sweep, lineage, round,
MLflow run), how to feed it (input shape and normalisation, class names), how sparse it is, and
which lth-sweep wrote it. One JSON-able dict; each format stores it its own way (safetensors
metadata, TorchScript extra files, ONNX metadata_props), always under `METADATA_KEY`.
"""
from __future__ import annotations

import json
from importlib import metadata as package_metadata

from lth_sweep.trainables.data import Dataset
from lth_sweep.export.lineage_run import LineageRun
from lth_sweep.export.network import Architecture

FORMAT = "lth-ticket"
FORMAT_VERSION = "1"
METADATA_KEY = "lth.ticket"  #: the JSON of the whole dict, in every format

NORMALISATION = (
    "applied by the data pipeline, outside the network: per channel, (pixels in [0, 1] - mean) / std"
)
LOADER_PREPROCESS = "load_ticket.preprocess(images, metadata) of a safetensors export does all of it"


def lth_sweep_version() -> str:
    try:
        return package_metadata.version("lth-sweep")
    except package_metadata.PackageNotFoundError:
        return "unknown (not installed)"


def ticket_metadata(
    *, lineage: LineageRun, round_index: int, winning: bool, architecture: Architecture, dataset: Dataset,
    parameters: int, slim: dict | None, export_format: str,
) -> dict:
    metrics = lineage.rounds.get(round_index, {})
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "export_format": export_format,
        "lth_sweep_version": lth_sweep_version(),
        "model": {"name": architecture.name, "class": architecture.cls.__name__, "arguments": architecture.arguments},
        "input": {
            "shape": [dataset.in_channels, dataset.image_size, dataset.image_size],
            "dtype": "float32",
            "normalisation": {"mean": list(dataset.mean), "std": list(dataset.std), "how": NORMALISATION},
            "preprocessing": preprocessing(dataset.in_channels, dataset.image_size),
        },
        "classes": {"count": dataset.num_classes, "names": list(dataset.class_names)},
        "sparsity": {
            "effective": metrics.get("sparsity"),
            "masked": metrics.get("sparsity/masked"),
            "nominal": metrics.get("sparsity/nominal"),
            "of": "the pruned layers' weights (effective: zero or cut off from the network; masked: exactly zero)",
        },
        "metrics": {key: metrics[key] for key in ("test/acc", "test/loss") if key in metrics},
        "parameters": parameters,
        "slim": slim,
        "ticket": {
            "label": lineage.label,
            "method": lineage.method,
            "round": round_index,
            "winning": winning,
            "seed": lineage.seed,
            "sweep": lineage.sweep,
            "sweep_id": lineage.sweep_id,
            "lineage_id": lineage.lineage_id,
            "mlflow_run_id": lineage.run_id,
            "mlflow_parent_run_id": lineage.parent_run_id,
            "dataset": lineage.params.get("trunk.data.name"),
        },
    }


def preprocessing(channels: int, size: int) -> dict:
    """Raw pixels to the network's input, step by step, as lth-sweep's data pipeline makes a
    dataset's images (trainables/data/decode.py, `prepare`; a generated dataset is drawn in [0, 1]
    at its size, which the same steps give from its uint8 pixels)."""
    return {
        "from": f"uint8 pixels in 0..255, (N, H, W, C) or (N, C, H, W), channels {'RGB' if channels == 3 else 'grey'}",
        "steps": [
            "channels: grey repeated to RGB, or RGB to grey as ITU-R 601-2 luma rounded to uint8; RGBA: alpha dropped",
            "scale: pixels / 255 as float32",
            f"resize: the shorter side to {size} (torch.nn.functional.interpolate, bilinear, align_corners=False, "
            f"antialias=True), then the centred {size} x {size} window, clamped to [0, 1]; none if already {size} x {size}",
            "normalise: per channel, (x - normalisation.mean) / normalisation.std",
        ],
        "to": f"float32 (N, {channels}, {size}, {size})",
        "function": LOADER_PREPROCESS,
    }


def as_strings(metadata: dict) -> dict[str, str]:
    """The string map formats store: the whole dict as JSON, plus the keys a reader checks first."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, METADATA_KEY: json.dumps(metadata, sort_keys=True)}
