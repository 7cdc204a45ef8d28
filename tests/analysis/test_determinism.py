"""Determinism of the analysis: the same input, options and key give bit-identical details on
repeated runs and in a fresh process; randomness comes from the explicit key only.

"Bit-identical" is checked twice: ``xarray.Dataset.identical`` (values, NaN == NaN, coords,
attrs) and equal bytes of every float variable (``identical`` would let 0.0 == -0.0 pass).
"""

import os
import pickle
import random
import subprocess
import sys

import jax
import numpy as np
import pytest
import xarray as xr
from helpers import ROOT, require

import rmtkit
from rmtkit.analysis import analyze
from rmtkit.collection import from_layers

OPTIONS = dict(
    randomize=True, mp_fit=True, detx=True, fix_fingers="clip_xmax", key=11, progress=False
)

#: builds the input in this process and in the fresh one alike
MODEL_SOURCE = """
import numpy as np
from rmtkit.collection import from_layers

def model():
    r = np.random.default_rng(42)
    w = (r.standard_t(2.5, size=(120, 80)) * 0.1).astype(np.float32)
    w[5, 7] = 30.0  # a correlation trap
    return from_layers({
        "fc": w,
        "conv": (r.standard_t(3, size=(16, 8, 3, 3)) * 0.1).astype(np.float32),
        "emb": ((r.normal(size=(200, 64)) * 0.05).astype(np.float32), "embedding"),
        "orth": np.linalg.qr(r.normal(size=(100, 64)))[0].astype(np.float32),
        "nan": np.full((60, 60), np.nan, np.float32),
    })
"""


def model() -> "xr.DataTree":
    namespace: dict = {}
    exec(MODEL_SOURCE, namespace)
    return namespace["model"]()


def assert_bit_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    assert a.identical(b)
    for name in list(a.data_vars) + list(a.coords):
        x, y = np.asarray(a[name].values), np.asarray(b[name].values)
        if x.dtype.kind == "f":
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


@pytest.mark.slow
def test_repeated_runs_are_bit_identical():
    first = analyze(model(), **OPTIONS)
    for _ in range(2):
        assert_bit_identical(analyze(model(), **OPTIONS), first)
    assert np.isfinite(first.rand_distance.values[:3]).all()  # randomization did run


def test_embedded_model_repeats():
    require("onnx")  # the embedded model is an ONNX file
    a = analyze(rmtkit.data_path(), randomize=True, key=jax.random.key(4), progress=False)
    b = analyze(rmtkit.data_path(), randomize=True, key=jax.random.key(4), progress=False)
    assert_bit_identical(a, b)


def test_global_random_state_and_clock_do_not_matter(monkeypatch):
    """Reseeding numpy's and Python's global generators, or a moving clock, changes nothing;
    only the key does."""
    np.random.seed(1)
    random.seed(1)
    a = analyze(model(), **OPTIONS)
    np.random.seed(2)
    random.seed(2)
    np.random.random(1000)
    import time

    monkeypatch.setattr(time, "time", lambda: 1e9)
    b = analyze(model(), **OPTIONS)
    assert_bit_identical(a, b)
    c = analyze(model(), **{**OPTIONS, "key": 12})
    assert not np.array_equal(a.max_rand_eval.values[:1], c.max_rand_eval.values[:1])


def test_int_seed_and_key_agree():
    a = analyze(model(), **OPTIONS)
    b = analyze(model(), **{**OPTIONS, "key": jax.random.key(11)})
    assert_bit_identical(a.drop_attrs(), b.drop_attrs())


@pytest.mark.slow
def test_fresh_process_is_bit_identical(tmp_path):
    """Another interpreter, another hash seed, one worker thread: the same bytes."""
    out = tmp_path / "details.pkl"
    script = "\n".join(
        [
            "import pickle",
            "import jax",
            'jax.config.update("jax_enable_x64", True)  # as conftest.py: the same numerics',
            "from rmtkit.analysis import analyze",
            MODEL_SOURCE,
            f"details = analyze(model(), **{OPTIONS!r})",
            f"pickle.dump(details, open({str(out)!r}, 'wb'))",
        ]
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    env.update(PYTHONHASHSEED="12345", RMTKIT_THREADS="1")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, env=env, timeout=600)
    with open(out, "rb") as f:
        fresh = pickle.load(f)
    assert_bit_identical(fresh, analyze(model(), **OPTIONS))


def test_determinism_survives_pickling_the_collection():
    tree = pickle.loads(pickle.dumps(from_layers({"fc": np.eye(70, 60, dtype=np.float32) * 2})))
    assert analyze(tree, progress=False).identical(
        analyze(from_layers({"fc": np.eye(70, 60, dtype=np.float32) * 2}), progress=False)
    )
