"""rmtkit.sharpen / rmtkit.smooth on collections, and the ONNX write-back (docs/math.md §7).

One weight shape (100, 64) throughout, so the jitted SVD kernels compile once.
"""

import numpy as np
import pytest
from helpers import layers_of, require, trapped_onnx
from helpers import trapped_dense as trapped

from rmtkit.analysis.transform import sharpen, smooth
from rmtkit.collection import from_layers, iter_layers
from rmtkit.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def tree():
    return from_layers({"trap": trapped(), "clean": trapped(1, trap=False)})


def test_sharpen_removes_the_trap_only(tree):
    before = layers_of(tree)
    out = sharpen(tree)
    after = layers_of(out)
    assert list(after) == ["trap", "clean"]
    np.testing.assert_array_equal(after["clean"], before["clean"])  # no trap: unchanged
    s0 = np.linalg.svd(before["trap"], compute_uv=False)
    s1 = np.linalg.svd(after["trap"], compute_uv=False)
    assert s1[0] < 0.5 * s0[0]  # the trap's spike is gone
    np.testing.assert_allclose(s1[:-1], s0[1:], rtol=1e-4)  # the rest is kept
    np.testing.assert_array_equal(layers_of(tree)["trap"], before["trap"])  # input untouched
    assert after["trap"].dtype == np.float32
    w = dict(iter_layers(out))["trap"]
    assert w.attrs["rmtkit_transform"] == "sharpen(mode=zero)" and w.attrs["source"] == "trap"
    np.testing.assert_array_equal(layers_of(sharpen(tree, 0))["trap"], after["trap"])  # key 0


def test_sharpen_layer_selection(tree):
    after = layers_of(sharpen(tree, layers="clean"))
    np.testing.assert_array_equal(after["trap"], layers_of(tree)["trap"])


def test_smooth_keeps_top_components(tree):
    after = layers_of(smooth(tree, k=5))
    for w in after.values():
        assert np.linalg.matrix_rank(w.astype(np.float64), tol=1e-4) == 5
    pct = layers_of(smooth(tree, "percent", percent=0.25))
    assert np.linalg.matrix_rank(pct["clean"].astype(np.float64), tol=1e-4) == 16


def test_bad_layers_pass_through():
    bad = np.full((100, 64), np.nan, np.float32)
    out = layers_of(sharpen(from_layers({"nan": bad, "zero": np.zeros((100, 64), np.float32)})))
    assert np.isnan(out["nan"]).all() and not out["zero"].any()


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t: sharpen(t, mode="half"), "`mode`"),
        (lambda t: sharpen(t, margin="x"), "`margin`"),
        (lambda t: sharpen(t, "seed"), "`key`"),
        (lambda t: smooth(t, "nope"), "`method`"),
        (lambda t: smooth(t, k=2.5), "`k`"),
        (lambda t: smooth(t, "percent", percent=2.0), "`percent`"),
        (lambda t: smooth(t, layers=99), "selects no layer"),
    ],
)
def test_bad_arguments(tree, call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(tree)


def test_sharpened_onnx_runs(tmp_path):
    ort = require("onnxruntime")
    from rmtkit.adapters import onnx as aonnx

    x = trapped_onnx(tmp_path / "in.onnx")
    coll = sharpen(tmp_path / "in.onnx")
    aonnx.save(tmp_path / "in.onnx", coll, tmp_path / "out.onnx")
    y0 = ort.InferenceSession(str(tmp_path / "in.onnx")).run(None, {"x": x})[0]
    y1 = ort.InferenceSession(str(tmp_path / "out.onnx")).run(None, {"x": x})[0]
    assert y1.shape == y0.shape and np.isfinite(y1).all() and not np.allclose(y0, y1)
    from rmtkit import load

    np.testing.assert_allclose(
        layers_of(load(tmp_path / "out.onnx"))["0"], layers_of(coll)["0"], rtol=1e-6
    )


def test_sharpen_removes_as_many_components_as_analyze_counts_traps(tree):
    """sharpen and analyze(randomize=True) use the same randomized draw per layer and key."""
    from rmtkit.analysis import analyze

    details = analyze(tree, randomize=True, key=4, min_evals=10, progress=False)
    before, after = layers_of(tree), layers_of(sharpen(tree, key=4))
    for name, traps in zip(details.name.values, details.num_traps.values, strict=True):
        s0 = np.linalg.svd(before[name], compute_uv=False)
        s1 = np.linalg.svd(after[name], compute_uv=False)
        k = int(traps)  # mode "zero": the top k components become zeros, the rest are kept
        assert np.sum(s1 < 1e-3 * s0[-1]) == np.sum(s0 < 1e-3 * s0[-1]) + k, name
        np.testing.assert_allclose(s1[: len(s1) - k], s0[k:], rtol=1e-4)
    assert int(details.num_traps.values.sum()) >= 1
