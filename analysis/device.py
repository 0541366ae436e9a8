"""Where an analysis actor measures: its device, and tensors that meet the model there.

An actor that asked Ray for GPUs (`analysis.gpus_per_actor`, fractions allowed) measures on CUDA
when Ray assigned it one and torch sees CUDA, else on the CPU: the training side's rule for
`device: auto` (`trainables.device.choose_device`), so a CPU actor of a GPU node never lands on
GPU 0 unscheduled. A GPU that Ray assigned but torch cannot see (logical GPUs, as in tests; a
driver problem) leaves the actor on the CPU, and `trainables.device.placement` says so in the
`lth.analysis_device` tag of the runs it logs to.

How the dimensions use the device: the model and the masks live there; each function moves its
batches to the model's device (`model_device`) and hands results back as Python floats or CPU
tensors. Random draws (PGD starts, Hessian probes, flatness noise, corruption and LIME noise) come
from seeded CPU generators and are moved afterwards, so both devices see the same perturbations.
Statistics over results (rank correlations, AUROC, calibration bins, concept classifiers in
scikit-learn, SLIC superpixels) stay on the CPU, as do the corrupted copies of the fixed sample and
the perceptual features of MIS, which depend on the data only and are computed once per actor.

Expected agreement of a CUDA actor with a CPU one (stated, not measured: no machine of this
project's has had a GPU yet; check it on the first one): the same inputs and the same draws, so
only the order of floating-point operations differs. The actor turns TF32 off (`use_full_precision`;
cuDNN convolutions use it by default), so float32 logits, maps and embeddings differ by ~1e-6 to
1e-5 relative. Then: accuracies (clean, FGSM, PGD, corrupted) agree exactly unless an image sits
on a decision boundary within that rounding (each such image moves one by 1/N); Grad-CAM rank
correlations and top-k IoU agree unless ties flip; Hessian eigenvalues (power iteration) to
~1e-4 relative; the flatness radius, a bisection on an accuracy, exactly or by one bisection step;
ECE, NLL, AUROC, LIME scores and concept classifiers fitted on those embeddings to ~1e-4.
"""
from __future__ import annotations


import torch
from torch import nn

from lth_sweep.trainables.device import choose_device, placement, ray_gpu_ids

#: On the lineage's and trunk's MLflow runs: where their analysis ran (`placement`'s words).
DEVICE_TAG = "lth.analysis_device"


def analysis_device(cuda_available: bool, ray_gpus: list[str] | None) -> torch.device:
    """The actor's device as a pure function of the facts: training's `device: auto` rule."""
    return choose_device("auto", cuda_available, ray_gpus)


def actor_device() -> torch.device:
    """This process's analysis device (called inside the actor)."""
    return analysis_device(torch.cuda.is_available(), ray_gpu_ids())


def describe(device: torch.device) -> str:
    """What the `lth.analysis_device` tag says, e.g. `cpu: 1 threads (Ray GPU ids 0 assigned, but
    torch sees no CUDA device)`."""
    return placement(device)


def use_full_precision(device: torch.device) -> None:
    """Float32 without TF32 on CUDA (cuDNN convolutions default to TF32, ~1e-3 relative): the
    analysis compares networks, so it stays within float32 rounding of the CPU's numbers."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def model_device(model: nn.Module) -> torch.device:
    """Where `model`'s weights are (the CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
