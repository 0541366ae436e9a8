"""Imports go down the layers (lth_sweep/layers.py), never up: every module's imports, at top level
or inside a function, read from its syntax tree."""
from __future__ import annotations

import ast
from pathlib import Path

from lth_sweep.layers import LAYERS
from tests.support.sweeps import ROOT

#: each layer's folder in the repository (`api` is lth_sweep/ itself)
FOLDERS = {layer: ROOT / ("lth_sweep" if layer == "api" else layer) for layer in LAYERS}


def layer_of(module: str) -> str | None:
    """The layer an imported module name belongs to (None: not lth-sweep's)."""
    parts = module.split(".")
    if parts[0] != "lth_sweep":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "api"


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for layer, folder in FOLDERS.items():
        files = folder.glob("*.py") if layer == "api" else folder.rglob("*.py")
        for path in files:
            for line, module in imports_of(path):
                imported = layer_of(module)
                if imported is not None and LAYERS.index(imported) > LAYERS.index(layer):
                    upward.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {module} ({imported})")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_every_module_is_in_a_layer_and_uses_the_installed_names():
    """Bare `import analysis...` would import the repository's folder again, as another module."""
    bare = []
    for folder in {*FOLDERS.values(), ROOT / "tests", ROOT / "bench"}:
        for path in folder.rglob("*.py"):
            bare += [f"{path.relative_to(ROOT)}:{line} imports {module}" for line, module in imports_of(path)
                     if module.split(".")[0] in {"analysis", "trainables", "orchestrator", "export"}]
    assert not bare, "\n".join(bare)


def test_the_analysis_actor_takes_what_the_trial_sends():
    """The trial (trainables) calls the actor (analysis, a layer above) by keyword through a Protocol."""
    import inspect

    from lth_sweep.analysis.actors import AnalysisActor
    from lth_sweep.trainables.round_analysis import RoundAnalyst

    def keywords(function) -> list[tuple[str, object]]:
        parameters = inspect.signature(function).parameters.values()
        return [(p.name, p.kind) for p in parameters if p.name != "self" and not p.name.startswith("_ray")]  # Ray adds its trace context

    actor = AnalysisActor.__ray_metadata__.modified_class.analyze
    assert keywords(actor) == keywords(RoundAnalyst.analyze)
    assert all(kind is inspect.Parameter.KEYWORD_ONLY for _, kind in keywords(actor))


def test_no_private_name_is_imported_from_another_module():
    """A `_name` is its module's own: another module that needs it needs a public name."""
    private = []
    for folder in FOLDERS.values():
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lth_sweep"):
                    private += [f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}"
                                for alias in node.names if alias.name.startswith("_")]
    assert not private, "\n".join(private)
