"""One bad layer in a model: its row says why (NaN metrics + ``warning``), the others do not move.

Every kind of bad layer is its own test: the bad layer sits between two good ones, and the
good rows must equal, bit for bit, those of an analysis of the two good layers alone (same
options). Semantics: the module docstring of :mod:`rmtkit.analysis`.

All spectra have at most 256 eigenvalues, so every analysis here reuses the one compiled
bucket kernel of the 256 bucket.
"""

import numpy as np
import pytest
import xarray as xr
from helpers import heavy, require

from rmtkit.analysis import analyze
from rmtkit.analysis.checks import SPECTRUM_MAX
from rmtkit.collection import LazyArray, build_tree, from_layers, weight_node

#: scale metrics: reported for too-few-evals / rank-deficient / duplicate-evals rows
SCALE = (
    "norm",
    "log_norm",
    "lambda_max",
    "spectral_norm",
    "log_spectral_norm",
    "stable_rank",
    "matrix_rank",
    "rank_loss",
    "weak_rank_loss",
    "num_evals",
)
#: fit-based metrics: NaN on every bad row
FITTED = (
    "alpha",
    "xmin",
    "xmax",
    "D",
    "sigma",
    "num_pl_spikes",
    "alpha_weighted",
    "log_alpha_norm",
)
#: rows that are not analysed at all (sizes only)
NOT_ANALYSED = tuple(v for v in SCALE + FITTED + ("entropy",) if v != "num_evals")


def rng(seed=0):
    return np.random.default_rng(seed)


GOOD = {"a": heavy((100, 64), 0), "b": heavy((120, 80), 1)}


def node(array, layer_id: int, kind: str = "dense") -> xr.Dataset:
    """A layer node holding ``array`` as it is (no adapter upcast: int, bfloat16 stay)."""
    dims = (
        ("fan_out", "fan_in", "kh", "kw")[: array.ndim]
        if kind != "dense"
        else ("fan_out", "fan_in")
    )
    return xr.Dataset(
        {"W": (dims, array)},
        attrs={
            "kind": kind,
            "layer_id": layer_id,
            "source": f"t{layer_id}",
            "framework": "numpy",
            "op": "array",
            "dtype": str(array.dtype),
        },
    )


def with_bad(bad: xr.Dataset | np.ndarray) -> xr.DataTree:
    """``a``, ``bad``, ``b`` in this order (layer ids 0, 1, 2)."""
    if isinstance(bad, np.ndarray):
        bad = node(bad, 1)
    return build_tree([("a", node(GOOD["a"], 0)), ("bad", bad), ("b", node(GOOD["b"], 2))])


def analyze_both(bad, **kw) -> tuple[xr.Dataset, xr.Dataset]:
    """Details with the bad layer and of the good layers alone; the good rows checked equal."""
    kw.setdefault("progress", False)
    ref = analyze(build_tree([("a", node(GOOD["a"], 0)), ("b", node(GOOD["b"], 1))]), **kw)
    d = analyze(with_bad(bad), **kw)
    assert list(d["name"].values) == ["a", "bad", "b"]
    assert_rows_identical(d.isel(layer=[0, 2]), ref)
    return d, ref


def assert_rows_identical(got: xr.Dataset, want: xr.Dataset) -> None:
    """Same variables and coordinates (layer ids aside), bit for bit (NaN == NaN)."""
    assert set(got.data_vars) == set(want.data_vars)
    for name in list(want.data_vars) + [c for c in want.coords if c != "layer_id"]:
        a, b = np.asarray(got[name].values), np.asarray(want[name].values)
        assert a.dtype.kind == b.dtype.kind, name
        if a.dtype.kind == "f":
            assert a.dtype == b.dtype, name
            assert a.tobytes() == b.tobytes(), (name, a, b)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def bad_row(d: xr.Dataset) -> xr.Dataset:
    return d.isel(layer=1)


def assert_nan(row: xr.Dataset, names) -> None:
    for name in names:
        assert np.isnan(row[name].item()), (name, row[name].item())


def assert_finite(row: xr.Dataset, names) -> None:
    for name in names:
        assert np.isfinite(row[name].item()), (name, row[name].item())


# --------------------------------------------------------------------------- not analysed


def test_nan_entries():
    w = heavy((100, 64), 5)
    w[3, 4] = np.nan
    row = bad_row(analyze_both(w)[0])
    assert row.warning.item() == "non-finite-weights"
    assert_nan(row, NOT_ANALYSED)
    assert row.N.item() == 100 and row.num_evals.item() == 64  # sizes still reported


def test_inf_entries():
    w = heavy((100, 64), 5)
    w[0, 0], w[1, 1] = np.inf, -np.inf
    row = bad_row(analyze_both(w)[0])
    assert row.warning.item() == "non-finite-weights"
    assert_nan(row, NOT_ANALYSED)


def test_all_zero_matrix():
    row = bad_row(analyze_both(np.zeros((100, 64), np.float32))[0])
    assert row.warning.item() == "all-zero"
    assert_nan(row, NOT_ANALYSED)


def test_entries_overflowing_the_spectrum():
    """|W| ~ 1e200: the Gram matrix overflows float64 (LAPACK used to raise LinAlgError)."""
    w = rng(5).normal(size=(100, 64)) * 1e200
    row = bad_row(analyze_both(w)[0])
    assert row.warning.item() == "spectrum-overflow"
    assert_nan(row, NOT_ANALYSED)
    ok = rng(5).normal(size=(100, 64))
    ok *= 0.5 * SPECTRUM_MAX / 80 / np.abs(ok).max()  # max|W| inside the bound (1e150/80)
    row = bad_row(analyze_both(ok)[0])
    assert row.warning.item() != "spectrum-overflow"
    assert_finite(row, ("norm", "log_norm", "lambda_max", "stable_rank", "entropy"))


def test_entries_underflowing_the_spectrum():
    """|W| ~ 1e-200: every eigenvalue underflows to 0 (log_norm used to be -inf)."""
    row = bad_row(analyze_both(rng(5).normal(size=(100, 64)) * 1e-200)[0])
    assert row.warning.item() == "spectrum-underflow"
    assert_nan(row, NOT_ANALYSED)


@pytest.mark.parametrize(
    "error",
    [OSError("disk on fire"), RuntimeError("torch says no"), KeyError("shard"), MemoryError()],
)
def test_reading_raises_anything(error):
    def broken():
        raise error

    row = bad_row(
        analyze_both(
            weight_node(LazyArray(broken, (100, 64), np.float32), kind="dense", layer_id=1)
        )[0]
    )
    assert row.warning.item().startswith("read-failed: ")
    assert_nan(row, NOT_ANALYSED)


# --------------------------------------------------------------------------- scale metrics only


def test_constant_matrix_is_rank_deficient():
    """A constant matrix is rank 1: one eigenvalue, no power law (alpha NaN)."""
    row = bad_row(analyze_both(np.full((100, 64), 0.3, np.float32))[0])
    assert row.warning.item() == "rank-deficient"
    assert row.matrix_rank.item() == 1 and row.rank_loss.item() == 63
    assert_nan(row, FITTED)
    assert_finite(row, SCALE)
    np.testing.assert_allclose(row.norm.item(), 0.09 * 6400, rtol=1e-6)
    np.testing.assert_allclose(row.stable_rank.item(), 1.0, rtol=1e-6)


def test_rank_deficient_product():
    """rank 5 (float32 A @ B): its float32 round-off is not spectrum (the fit used to report
    alpha 2.7 from 5 eigenvalues)."""
    w = (rng(6).normal(size=(100, 5)) @ rng(7).normal(size=(5, 64))).astype(np.float32)
    row = bad_row(analyze_both(w)[0])
    assert row.warning.item() == "rank-deficient"
    assert_nan(row, FITTED)
    assert_finite(row, SCALE)


def test_rank_deficient_but_enough_rank_is_fitted():
    """Rank 60 of 64 >= min_evals: a normal row."""
    w = heavy((100, 64), 8)
    w[:, 60:] = w[:, :4]  # 4 repeated columns
    row = bad_row(analyze_both(w)[0])
    assert row.warning.item() in ("", "over-trained", "under-trained")
    assert_finite(row, FITTED)


def test_duplicate_heavy_orthogonal_matrix():
    """All eigenvalues 1 up to float32 round-off: alpha used to be 4e7, "under-trained"."""
    q, _ = np.linalg.qr(rng(9).normal(size=(100, 64)))
    row = bad_row(analyze_both(q.astype(np.float32))[0])
    assert row.warning.item() == "duplicate-evals"
    assert_nan(row, FITTED)
    assert_finite(row, SCALE)
    np.testing.assert_allclose(row.stable_rank.item(), 64.0, rtol=1e-5)


def test_duplicate_heavy_identity():
    """Exact ties (alpha would be infinite)."""
    row = bad_row(analyze_both(np.eye(80, 64, dtype=np.float32) * 3)[0])
    assert row.warning.item() == "duplicate-evals"
    assert_nan(row, FITTED)


def test_duplicate_heavy_tail():
    """40 of 64 singular values equal: the whole-spectrum KS search degenerates into the tie."""
    u, _ = np.linalg.qr(rng(3).normal(size=(100, 64)))
    v, _ = np.linalg.qr(rng(4).normal(size=(64, 64)))
    s = np.concatenate([np.linspace(0.5, 2.0, 24), np.full(40, 3.0)])
    row = bad_row(analyze_both(((u * s) @ v.T).astype(np.float32))[0])
    assert row.warning.item() == "duplicate-evals"
    assert_nan(row, FITTED)


def test_fewer_eigenvalues_than_min_evals():
    row = bad_row(analyze_both(heavy((30, 20), 10))[0])
    assert row.warning.item() == "too-few-evals"
    assert row.num_evals.item() == 20
    assert_nan(row, FITTED)
    assert_finite(row, SCALE)


@pytest.mark.parametrize("shape", [(1, 100), (100, 1)])
def test_single_row_or_column(shape):
    """A 1 x n or n x 1 matrix has one eigenvalue: too few for any min_evals > 1, and for
    min_evals <= 1 a fit of one eigenvalue fails."""
    w = rng(11).normal(size=shape).astype(np.float32)
    row = bad_row(analyze_both(w)[0])
    assert row.warning.item() == "too-few-evals" and row.num_evals.item() == 1
    assert row.N.item() == 100 and row.M.item() == 1
    np.testing.assert_allclose(
        row.lambda_max.item(), float(np.sum(w.astype(float) ** 2)), rtol=1e-6
    )
    row = bad_row(analyze_both(w, min_evals=1)[0])
    assert row.warning.item() == "fit-failed"
    assert_nan(row, FITTED)
    assert row.matrix_rank.item() == 1


def test_fit_cannot_converge():
    """Every eigenvalue below the fit's 1e-5 threshold: no admissible tail, "fit-failed"."""
    row = bad_row(analyze_both(heavy((100, 64), 12) * 1e-4)[0])
    assert row.warning.item() == "fit-failed"
    assert_nan(row, FITTED)
    assert_finite(row, ("norm", "lambda_max", "stable_rank", "log_norm"))


@pytest.mark.slow
def test_tpl_fit_cannot_converge():
    """The same layer under the truncated power law (its own "not ok" path)."""
    row = bad_row(analyze_both(heavy((100, 64), 12) * 1e-4, fit="TPL")[0])
    assert row.warning.item() == "fit-failed"
    assert_nan(row, FITTED + ("Lambda",))


# --------------------------------------------------------------------------- upcasts


def _same_as_float(d: xr.Dataset, w32: np.ndarray, **kw) -> None:
    """The bad row equals the row of the exact float32 (or float64) upcast, bit for bit."""
    want = analyze(with_bad(w32), progress=False, **kw)
    assert_rows_identical(d, want)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.bool_])
def test_narrow_integer_weights_are_analysed_as_float32(dtype):
    w = rng(13).integers(-100, 100, size=(100, 64)).astype(dtype)
    d, _ = analyze_both(w)
    assert bad_row(d).warning.item() in ("", "over-trained", "under-trained", "rank-deficient")
    _same_as_float(d, w.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_wide_integer_weights_are_analysed_as_float64(dtype):
    w = rng(14).integers(-(2**30), 2**30, size=(100, 64)).astype(dtype)
    d, _ = analyze_both(w)
    assert_finite(bad_row(d), FITTED)
    _same_as_float(d, w.astype(np.float64))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float8_e4m3fn"])
def test_half_precision_weights_are_analysed_as_float32(dtype):
    import ml_dtypes

    w = heavy((100, 64), 15).astype(getattr(ml_dtypes, dtype, None) or np.dtype(dtype))
    d, _ = analyze_both(w)
    assert_finite(bad_row(d), FITTED)
    _same_as_float(d, w.astype(np.float32))


def test_bfloat16_from_torch_and_safetensors(tmp_path):
    """bf16 arrives from torch and safetensors (the adapters widen it); same rows."""
    torch = require("torch")
    st = require("safetensors.torch")
    w = torch.from_numpy(heavy((100, 64), 16)).to(torch.bfloat16)
    st.save_file({"fc.weight": w}, str(tmp_path / "m.safetensors"))
    from_torch = analyze({"fc.weight": w}, progress=False)
    from_file = analyze(tmp_path / "m.safetensors", progress=False)
    direct = analyze(from_layers({"fc": w.float().numpy()}), progress=False)
    for d in (from_torch, from_file):
        assert_rows_identical(d, direct)


# --------------------------------------------------------------------------- all together


def test_every_bad_layer_at_once_with_every_option():
    """All the cases in one model, with randomization, MP and detX: the good rows equal the
    analysis without them, bit for bit; every bad row has NaN fit-based metrics."""
    q, _ = np.linalg.qr(rng(9).normal(size=(100, 64)))
    nan = heavy((100, 64), 5)
    nan[0, 0] = np.nan
    bad = {
        "nan": nan,
        "zero": np.zeros((100, 64), np.float32),
        "const": np.full((100, 64), 2.0, np.float32),
        "orth": q.astype(np.float32),
        "tiny": heavy((30, 20)),
        "row": np.ones((1, 90), np.float32),
        "small": heavy((100, 64)) * 1e-4,
        "huge": rng(5).normal(size=(100, 64)) * 1e200,
    }
    kw = dict(randomize=True, mp_fit=True, detx=True, key=3, progress=False)
    nodes = [("a", node(GOOD["a"], 0))] + [
        (k, node(v, i + 1)) for i, (k, v) in enumerate(bad.items())
    ]
    nodes.append(("b", node(GOOD["b"], len(nodes))))
    d = analyze(build_tree(nodes), **kw)
    ref = analyze(build_tree([("a", node(GOOD["a"], 0)), ("b", node(GOOD["b"], 1))]), **kw)
    ids = {n: i for i, n in enumerate(d["name"].values)}
    # randomization keys fold in layer_id: give the reference the same ids
    ref_ids = analyze(
        build_tree([("a", node(GOOD["a"], 0)), ("b", node(GOOD["b"], len(nodes) - 1))]), **kw
    )
    assert_rows_identical(d.isel(layer=[ids["a"], ids["b"]]), ref_ids)
    assert_rows_identical(d.isel(layer=[ids["a"]]), ref.isel(layer=[0]))
    for name in bad:
        row = d.isel(layer=ids[name])
        assert row.warning.item() not in ("", "over-trained", "under-trained"), name
        assert_nan(row, FITTED)
        if row.warning.item() != "fit-failed":  # a failed fit keeps what does not depend on it
            assert_nan(row, ("rand_distance", "num_traps", "sigma_mp", "detX_num"))
    for name in d.data_vars:
        if d[name].dtype.kind == "f":
            assert not np.isinf(d[name].values).any(), name
