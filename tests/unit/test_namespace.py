"""lth-sweep installs one namespace, lth_sweep: a user's own `analysis.py`, `trainables.py`,
`orchestrator.py` or `export.py` in the working folder (Python puts it first on the path) changes
nothing, where top-level packages of those names were shadowed by them."""
from __future__ import annotations

import subprocess
import sys

STRAYS = ("analysis", "trainables", "orchestrator", "export")


def test_stray_modules_of_the_same_names_in_the_working_folder_change_nothing(tmp_path):
    for name in STRAYS:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    code = (
        "import lth_sweep, lth_sweep.orchestrator.cli, lth_sweep.analysis.query, lth_sweep.export.export\n"
        "config = lth_sweep.load_config(None)\n"
        "print(config.name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "quickstart"
    planned = subprocess.run([sys.executable, "-m", "lth_sweep.orchestrator.cli", "sweep", "--dry-run"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0 and "sweep quickstart" in planned.stdout, planned.stderr[-3000:]


def test_every_package_folder_is_installed():
    """A subpackage missing from pyproject's `packages` works in an editable install and is left
    out of a wheel: every folder with an `__init__.py` under a mapped folder is listed."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(root / folder).parts
            found.add(".".join((package, *relative)))
    assert found == set(setuptools["packages"])
