"""The Python API's config entry points judge a mapping or an object as strictly as a file."""
from __future__ import annotations

import pytest

import lth_sweep as lth


def test_a_mapping_is_judged_like_a_file():
    with pytest.raises(lth.ConfigError, match=r"train.epochs: true is a yes/no value"):  # planned before Ray starts
        lth.run_sweep({"name": "x", "train": {"epochs": True}})
    with pytest.raises(lth.ConfigError, match="pruning"):
        lth.config_from_dict({"name": "x", "pruning": []})
    config = lth.config_from_dict({"name": "x", "seeds": [0]}, overrides=["seeds=[1,2]"])
    assert config.seeds == [1, 2]
    assert lth.load_config(None).name == "quickstart"  # None: the built-in quickstart
