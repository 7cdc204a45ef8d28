"""xarray's dask tests made lazy (rmtkit.collection.xarray_compat): numpy-backed Datasets import no
dask, and dask-backed data is still recognised as such, exactly as xarray does."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from _deps import require

from rmtkit.collection import xarray_compat

dask_array = require("dask.array")


def run_fresh(code: str) -> dict:
    """``code`` in a fresh interpreter; the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=600
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_an_analysis_imports_no_dask():
    """load, analyze, summary, the table and the repr of a numpy-backed model: no dask."""
    out = run_fresh(
        "import json, sys\n"
        "import numpy as np\n"
        "import rmtkit\n"
        "rng = np.random.default_rng(0)\n"
        "tree = rmtkit.from_layers({'a': rng.standard_t(3, (120, 80)),"
        " 'b': rng.standard_t(3, (90, 60))})\n"
        "details = rmtkit.analyze(tree, progress=False)\n"
        "rmtkit.summary(details); details.to_dataframe(); repr(details); repr(tree)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'dask')))\n"
    )
    assert out == []


def test_dask_arrays_are_still_dask_arrays_after_a_numpy_dataset():
    """In one fresh process: a numpy Dataset first (the deferred answers are in use), then
    dask-backed data is chunked, stays lazy, and a masked dask array is filled with NaN as
    xarray does it."""
    out = run_fresh(
        "import json\n"
        "import numpy as np\n"
        "import rmtkit.collection, xarray as xr\n"
        "xr.Dataset({'x': ('i', np.arange(3.0))}).x.notnull()\n"
        "import dask.array as da\n"
        "a = xr.DataArray(da.ones((4, 3), chunks=2), dims=('i', 'j'))\n"
        "m = xr.Variable('i', da.ma.masked_equal(da.arange(4.0, chunks=2), 2.0))\n"
        "s = (a * 2).sum('j')\n"
        "print(json.dumps({'chunks': a.chunks is not None, 'lazy': type(s.data).__module__,"
        " 'masked': np.isnan(m.values).tolist(), 'sum': s.values.tolist()}))\n"
    )
    assert out == {
        "chunks": True,
        "lazy": "dask.array.core",
        "masked": [False, False, True, False],
        "sum": [6.0, 6.0, 6.0, 6.0],
    }


def test_is_dask_collection_answers_as_dask_does():
    from dask.base import is_dask_collection as dask_answer
    from xarray.namedarray import utils

    assert getattr(utils.is_dask_collection, "_rmtkit_deferred", False)

    class NotCallable:
        __dask_graph__ = None

    cases = [
        np.ones(3),
        dask_array.ones(3, chunks=2),
        xr.DataArray(np.ones(3)),
        xr.DataArray(dask_array.ones(3, chunks=2)),
        xr.DataArray,
        NotCallable(),
        3.0,
    ]
    for case in cases:
        assert utils.is_dask_collection(case) == dask_answer(case), case


def test_the_deferred_entries_are_in_place_and_idempotent():
    """Fails when an xarray release renames what the deferral relies on (the speed-up would
    be lost silently otherwise)."""
    fresh = run_fresh(
        "import json\n"
        "from rmtkit.collection import xarray_compat\n"
        "print(json.dumps([xarray_compat.defer_dask(), xarray_compat.defer_dask()]))\n"
    )
    assert fresh == [[True, True], [True, True]]


@pytest.mark.parametrize("present", [False, True])
def test_array_type_follows_sys_modules(monkeypatch, present):
    from xarray.namedarray import pycompat

    monkeypatch.setitem(pycompat._cached_duck_array_modules, "dask", None)
    del pycompat._cached_duck_array_modules["dask"]
    if not present:
        monkeypatch.delitem(sys.modules, "dask.array")
    assert xarray_compat.defer_dask()[0]
    got = pycompat.array_type("dask")
    assert got == ((dask_array.Array,) if present else ())
