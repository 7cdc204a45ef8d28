"""Every notebook in notebooks/ runs top to bottom, and is stored executed and small.

Each notebook is executed from a temporary copy (the committed file is never rewritten), in an
IPython kernel of this interpreter with warnings as errors, within a time budget, by
``scripts/execute_notebooks.py`` (which also re-executes them in place: see its docstring).
"""

import importlib.util

import pytest
from helpers import ROOT, require

nbformat = require("nbformat")
require("nbclient")
require("ipykernel")
# what the notebooks themselves import beyond the test extra's usual packages
for _name in ("sklearn", "matplotlib", "torch", "onnxruntime", "pandas"):
    require(_name)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _runner():
    spec = importlib.util.spec_from_file_location(
        "execute_notebooks", ROOT / "scripts" / "execute_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _runner()


def test_the_walkthroughs_are_there():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_quickstart", "02_predicting_trends", "03_correlation_traps", "04_onnx"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_executed_and_small(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name} is not stored executed top to bottom (execution counts {counts}); "
        "run: python scripts/execute_notebooks.py " + path.stem
    )
    assert not runner.stderr_outputs(nb), f"{path.name} is stored with stderr output"
    assert path.stat().st_size <= runner.MAX_BYTES, (
        f"{path.name} is {path.stat().st_size} bytes (limit {runner.MAX_BYTES}): "
        "draw figures at a smaller dpi"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    nb = nbformat.read(copy, as_version=4)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    try:
        runner.execute(nb, cwd=workdir, timeout=runner.TIMEOUT, name=path.name)
    except runner.NotebookError as err:
        pytest.fail(str(err), pytrace=False)
