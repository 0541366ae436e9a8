"""Fixtures of the sweep tests (the session's Ray, `ray_session`, is in tests/conftest.py)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def ray_tmp():
    """A private, short Ray temp dir for a sweep run in a child process, which starts its own Ray
    there (Ray's socket paths must stay under 108 characters)."""
    folder = Path(tempfile.mkdtemp(prefix="lthf", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
