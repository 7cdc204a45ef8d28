"""The layer rules of rmtkit's folders, checked on the source (AST), and a check that they bite.

Each folder's ``__init__`` docstring states its rule; this file is where it is enforced. A rule
says which of rmtkit's folders a module may import (data flows one way: errors -> core ->
engine / collection -> adapters / analysis -> plot -> apps) and which third-party packages;
every import counts, at module level or inside a function. Across folders only public names
may be imported: no module or name starting with ``_`` below another folder (``rmtkit._engine``
is a folder of its own, private to rmtkit, not to a folder).
"""

import ast
import shutil
import sys
from pathlib import Path

from helpers import ROOT

STDLIB = frozenset(sys.stdlib_module_names)
FRAMEWORKS = frozenset(
    {"onnx", "onnxruntime", "torch", "keras", "safetensors", "ml_dtypes", "google", "gguf"}
)

#: folder (relative to the repository) -> (rmtkit folders it may import, third-party packages).
#: A folder's own modules are always allowed. "rmtkit" alone is the public top-level API.
RULES: dict[str, tuple[frozenset, frozenset]] = {
    "rmtkit/errors.py": (frozenset(), frozenset()),
    "rmtkit/core": (
        frozenset({"rmtkit.errors"}),
        frozenset({"jax", "numpy", "scipy", "jaxtyping"}),
    ),
    "rmtkit/_engine": (
        frozenset({"rmtkit.errors", "rmtkit.core"}),
        frozenset({"jax", "jaxlib", "numpy", "dask", "distributed", "threadpoolctl"}),
    ),
    "rmtkit/collection": (
        frozenset({"rmtkit.errors", "rmtkit.core", "rmtkit.adapters"}),
        frozenset({"numpy", "xarray"}),
    ),
    "adapters": (
        frozenset({"rmtkit.errors", "rmtkit.collection"}),
        frozenset({"numpy", "xarray", "jax"}) | FRAMEWORKS,
    ),
    "rmtkit/analysis": (
        frozenset(
            {"rmtkit", "rmtkit.errors", "rmtkit.core", "rmtkit._engine", "rmtkit.collection"}
        ),
        frozenset({"numpy", "jax", "xarray", "pandas"}),
    ),
    "rmtkit/plot": (
        frozenset({"rmtkit", "rmtkit.errors", "rmtkit.core"}),
        frozenset({"numpy", "jax", "xarray", "matplotlib"}),
    ),
    "rmtkit/report": (
        frozenset({"rmtkit", "rmtkit.errors", "rmtkit.core", "rmtkit.plot"}),
        frozenset({"numpy", "jax", "xarray", "matplotlib"}),
    ),
    "rmtkit/testing": (frozenset(), frozenset({"numpy", "scipy", "hypothesis"})),
}
#: the applications: the public API only (top-level names, public namespaces and modules)
APPS = ("rmtkit/cli.py", "rmtkit/monitor.py", "rmtkit/facade.py", "rmtkit/__main__.py")
APP_RULE = (
    frozenset(
        {
            "rmtkit",
            "rmtkit.errors",
            "rmtkit.core",
            "rmtkit.collection",
            "rmtkit.plot",
            "rmtkit.adapters",
            "rmtkit.cli",
        }
    ),
    frozenset(
        {
            "numpy",
            "xarray",
            "pandas",
            "matplotlib",
            "keras",
            "distributed",
            "pyarrow",
            "fastparquet",
        }
    ),
)


def _folder_of(module: str) -> str:
    """``rmtkit.core.esd`` -> ``rmtkit.core``; ``rmtkit`` -> ``rmtkit``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "rmtkit" and len(parts) > 1 else parts[0]


def _own_folder(rel: str) -> str:
    """The dotted rmtkit folder a source file belongs to (``adapters`` is rmtkit.adapters)."""
    parts = Path(rel).parts
    if parts[0] == "adapters":
        return "rmtkit.adapters"
    return "rmtkit." + parts[1].removesuffix(".py") if len(parts) > 1 else "rmtkit"


def _imports(path: Path):
    """``(line, module, names)`` of every import of a file (relative imports resolved to
    rmtkit's absolute names are not used in rmtkit, so they are reported as they are)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            yield (
                node.lineno,
                ("." * node.level) + (node.module or ""),
                tuple(a.name for a in node.names),
            )


def _check_file(rel: str, path: Path, rule) -> list[str]:
    rmtkit_ok, third_ok = rule
    own = _own_folder(rel)
    problems = []
    for line, module, names in _imports(path):
        where = f"{rel}:{line}"
        if module.startswith("."):
            problems.append(f"{where}: relative import {module!r}")
            continue
        root = module.split(".")[0]
        if root == "rmtkit":
            if module == "rmtkit" and names and all(n not in ("_engine",) for n in names):
                target = {
                    f"rmtkit.{n}"
                    for n in names
                    if n
                    in ("errors", "core", "collection", "analysis", "plot", "adapters", "testing")
                } or {"rmtkit"}
            else:
                target = {_folder_of(module)}
            for folder in target:
                if folder != own and folder not in rmtkit_ok:
                    problems.append(f"{where}: imports {module} ({folder} is not allowed here)")
            if _folder_of(module) != own:
                inner = module.split(".")[2:] if module.count(".") >= 2 else []
                private = [p for p in inner if p.startswith("_")]
                private += [n for n in names if n.startswith("_") and n != "__version__"]
                if private:
                    problems.append(f"{where}: private name(s) {private} of {module}")
        elif root not in STDLIB and root not in third_ok:
            problems.append(f"{where}: imports third-party {root!r}")
    return problems


def violations(root: Path = ROOT) -> list[str]:
    """Every import of rmtkit's source under ``root`` that breaks its folder's rule."""
    problems = []
    checked = set()
    for target, rule in [*RULES.items(), *((app, APP_RULE) for app in APPS)]:
        base = root / target
        files = [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))
        for path in files:
            rel = path.relative_to(root).as_posix()
            checked.add(rel)
            problems += _check_file(rel, path, rule)
    unruled = sorted(
        p.relative_to(root).as_posix()
        for p in (root / "rmtkit").rglob("*.py")
        if p.relative_to(root).as_posix() not in checked
        and p.relative_to(root).as_posix() != "rmtkit/__init__.py"
    )
    problems += [f"{rel}: no import rule covers this file" for rel in unruled]
    return problems


def test_every_folder_keeps_its_import_rule():
    assert violations() == []


def test_the_rule_check_fails_on_planted_violations(tmp_path):
    """The check is not vacuous: a copy of the source with planted violations fails it, one
    message per kind of violation."""
    for part in ("rmtkit", "adapters"):
        shutil.copytree(
            ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "data")
        )
    assert violations(tmp_path) == []
    (tmp_path / "rmtkit" / "core" / "planted.py").write_text(
        "import xarray\n"
        "from rmtkit.analysis.checks import plan\n"
        "def f():\n    from rmtkit.collection.tree import iter_layers\n"
    )
    (tmp_path / "rmtkit" / "plot" / "planted.py").write_text(
        "from rmtkit.analysis.checks import _as_float\nimport rmtkit._engine.host\n"
    )
    (tmp_path / "rmtkit" / "new_folder").mkdir()
    (tmp_path / "rmtkit" / "new_folder" / "x.py").write_text("import numpy\n")
    found = violations(tmp_path)
    assert any("core/planted.py:1: imports third-party 'xarray'" in p for p in found), found
    assert any("core/planted.py:2: imports rmtkit.analysis.checks" in p for p in found), found
    assert any("core/planted.py:4: imports rmtkit.collection.tree" in p for p in found), found
    assert any("plot/planted.py:1: private name(s) ['_as_float']" in p for p in found), found
    assert any("plot/planted.py:2: imports rmtkit._engine.host" in p for p in found), found
    assert any("new_folder/x.py: no import rule covers this file" in p for p in found), found
