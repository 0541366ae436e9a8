"""Fixtures of the unit tests (no Ray, no sweep)."""
from __future__ import annotations

import copy

import pytest
import torch

from tests.support.tiny import REWIND, tiny_trunk
from lth_sweep.trainables.trunk import TrunkResult, train_trunk


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (use: `pytestmark = pytest.mark.usefixtures("one_thread")`).
    Tiny tensors: intra-op threads only add contention on a shared machine; on a loaded 2-core
    machine two threads made test_concepts.py's training take 178 s instead of 5-9 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def plain_cpu_convolutions():
    """oneDNN off for a module (use: `pytestmark = pytest.mark.usefixtures("plain_cpu_convolutions")`).
    oneDNN re-lays out every conv weight on each call, which dominates at tiny image sizes
    (GoogLeNet at 15 px: 1.8 s a batch instead of 0.02 s); the native kernels give the same numbers."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


@pytest.fixture(scope="session")
def _trained_tiny_trunk() -> TrunkResult:
    # On one thread whatever the test that first asks for it: the float sums of a convolution's
    # backward depend on the thread count, and tests retrain it bit for bit on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_trunk(tiny_trunk(), rewind_iterations=(REWIND,))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def trained_trunk(_trained_tiny_trunk) -> TrunkResult:
    """`tiny_trunk()` trained, with a snapshot at iteration REWIND: trained once per session, and
    each test gets its own copy, so none sees what another did to it."""
    return copy.deepcopy(_trained_tiny_trunk)
