"""The architecture's own source, made self-contained: `model.py` of a safetensors export.

The registry's model module is copied with the lth-sweep modules it imports from (in
`trainables.models`: `base.py`, `inputs.py`, ...) inlined before it, and their import lines
removed, so the file needs only torch, torchvision, safetensors and the standard library. It is
the code that trained the ticket, not a re-implementation of it. A model whose source reaches
anything else (open_clip, lth-sweep code outside `trainables.models` or imported inside a function) is
refused with `NotStandalone`, which suggests TorchScript or ONNX. The export checks the result by
loading the written folder as a user would (`formats.write_safetensors`).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import sys
import types
from pathlib import Path

from torch import nn

from lth_sweep.export.errors import ExportError

PACKAGE = "lth_sweep.trainables.models"  #: the only lth-sweep package whose modules are inlined
ALLOWED = {"torch", "torchvision", "safetensors"} | set(sys.stdlib_module_names)


class NotStandalone(ExportError):
    """The model's architecture cannot be written as source needing only torch and torchvision."""


def _refuse(model: str, why: str) -> NotStandalone:
    return NotStandalone(
        f"model {model} cannot be exported as safetensors with a standalone loader: {why}; "
        "export it with --format torchscript or --format onnx, which need no Python source"
    )


def _imported_module(node: ast.ImportFrom) -> str:
    if node.level:
        raise ValueError("a relative import")
    return node.module or ""


def _dependencies(module: types.ModuleType, model: str) -> list[types.ModuleType]:
    """`module` and the `trainables.models` modules it needs, those first (depth first)."""
    ordered: list[types.ModuleType] = []

    def visit(current: types.ModuleType, trail: tuple[str, ...]) -> None:
        if current in ordered:
            return
        if current.__name__ in trail:
            raise _refuse(model, f"{current.__name__} imports itself through {' -> '.join(trail)}")
        tree = ast.parse(inspect.getsource(current))
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            try:
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [_imported_module(node)]
            except ValueError as error:
                raise _refuse(model, f"{current.__name__} has {error}") from None
            for name in names:
                root = name.split(".")[0]
                if root == "lth_sweep":
                    if isinstance(node, ast.Import) or not name.startswith(PACKAGE) or id(node) not in top_level:
                        raise _refuse(model, f"{current.__name__} imports lth-sweep code outside {PACKAGE} ({name})")
                    visit(importlib.import_module(name), (*trail, current.__name__))
                elif root not in ALLOWED:
                    raise _refuse(model, f"{current.__name__} needs {root!r}, which a standalone loader cannot assume installed")
        ordered.append(current)

    visit(module, ())
    return ordered


def _body(module: types.ModuleType) -> tuple[str, set[str]]:
    """The module's source less its `from __future__` and lth-sweep import lines, and the names
    it defines at top level."""
    source = inspect.getsource(module)
    tree = ast.parse(source)
    lines = source.splitlines()
    drop: set[int] = set()
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module == "__future__" or (node.module or "").startswith("lth_sweep")):
            drop.update(range(node.lineno - 1, node.end_lineno))
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
    kept = "\n".join(line for index, line in enumerate(lines) if index not in drop)
    return kept, defined


def standalone_source(cls: type[nn.Module], model: str) -> str:
    """Python source defining `cls` (and all it needs from lth-sweep) for torch alone."""
    module = sys.modules[cls.__module__]
    parts, owners = [], {}
    for dependency in _dependencies(module, model):
        body, defined = _body(dependency)
        for name in defined:
            if name in owners:
                raise _refuse(model, f"{name} is defined in both {owners[name]} and {dependency.__name__}")
            owners[name] = dependency.__name__
        path = Path(inspect.getfile(dependency))
        parts.append(f"# ---- from lth-sweep's {dependency.__name__.removeprefix('lth_sweep.')} ({path.name}) " + "-" * 40 + "\n" + body.strip() + "\n")
    if owners.get(cls.__name__) != module.__name__:
        raise _refuse(model, f"{cls.__name__} is not defined at the top level of {module.__name__}")
    head = (
        f'"""The architecture of lth-sweep\'s model {model} ({cls.__name__}), generated by `lth export` from the\n'
        "source that trained it. Needs torch (and torchvision where imported below), not lth-sweep.\n"
        'Build it with the arguments in the ticket\'s metadata; load_ticket.py does."""\n'
        "from __future__ import annotations\n\n"
    )
    return head + "\n\n".join(parts)
