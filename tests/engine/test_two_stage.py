"""The host route's two-stage eigensolver (rmtkit._engine.host.eigvalsh64): the precision contract
of docs/math.md §1 against float64 SVD values, determinism, and the fallbacks."""

import numpy as np
import pytest

from rmtkit._engine import host
from rmtkit._engine.executor import blas_threads

#: docs/math.md §1: relative error allowed for eigenvalues >= FLOOR * lambda_max
CONTRACT, FLOOR = 1e-5, 1e-6

two_stage = pytest.mark.skipif(
    not host.two_stage_available(), reason="no LAPACKE dsyevd_2stage in the loaded OpenBLAS"
)


def heavy_tailed(n_rows: int, n_cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_t(2.5, (n_rows, n_cols)) * 0.02).astype(np.float32)


def svd_reference(w: np.ndarray) -> np.ndarray:
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    return np.sort(s * s)


def max_rel_error(evals: np.ndarray, ref: np.ndarray) -> float:
    keep = ref >= FLOOR * ref[-1]
    return float(np.max(np.abs(evals[keep] - ref[keep]) / ref[keep]))


def test_numpy_wheels_ship_the_two_stage_solver():
    """numpy's wheels bundle scipy-openblas, which has LAPACKE dsyevd_2stage: the fast route is
    in use wherever rmtkit is installed from PyPI."""
    config = np.show_config(mode="dicts")
    if "scipy-openblas" not in str(config["Build Dependencies"]["lapack"].get("name", "")):
        pytest.skip("numpy is not built with scipy-openblas")
    assert host.two_stage_available()


@two_stage
@pytest.mark.parametrize("shape", [(600, 400), (400, 400), (3000, 250)])
def test_two_stage_meets_the_precision_contract(shape):
    w = heavy_tailed(*shape)
    ref = svd_reference(w)
    got = host.eigvalsh64(host.gram64(w), two_stage=True)
    one_stage = host.eigvalsh64(host.gram64(w), two_stage=False)
    assert max_rel_error(got, ref) < 1e-9  # far inside the contract
    assert max_rel_error(got, one_stage) < CONTRACT
    assert np.all(np.diff(got) >= 0)


@two_stage
def test_two_stage_is_deterministic_across_calls_and_blas_threads():
    gram = host.gram64(heavy_tailed(700, 520, seed=1))
    with blas_threads(1):
        a = host.eigvalsh64(gram.copy(), two_stage=True)
        b = host.eigvalsh64(gram.copy(), two_stage=True)
    with blas_threads(2):
        c = host.eigvalsh64(gram.copy(), two_stage=True)
    assert a.tobytes() == b.tobytes()
    # another BLAS thread count: bit for bit on an AMD EPYC, a few ulps apart on an Intel Xeon
    # (OpenBLAS sums in another order there)
    np.testing.assert_allclose(c, a, rtol=1e-12, atol=0)


@two_stage
def test_the_default_route_switches_at_two_stage_from(monkeypatch):
    calls = []
    real = host._two_stage

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(host, "_two_stage", counting)
    monkeypatch.setattr(host, "TWO_STAGE_FROM", 300)
    small, large = heavy_tailed(400, 299), heavy_tailed(400, 300)
    host.host_esd(small)
    assert not calls
    evals = host.host_esd(large)
    assert calls
    assert max_rel_error(evals, svd_reference(large)) < CONTRACT


@pytest.mark.slow
@two_stage
def test_an_llm_sized_width_meets_the_contract():
    """M = TWO_STAGE_FROM, the default threshold (no patching): the route real layers of this
    size take, against numpy's float64 ``eigvalsh`` of the same Gram matrix and SVD values."""
    w = heavy_tailed(host.TWO_STAGE_FROM + 300, host.TWO_STAGE_FROM, seed=2)
    got = host.host_esd(w)
    numpy_evals = np.linalg.eigvalsh(host.gram64(w))
    assert max_rel_error(got, numpy_evals) < CONTRACT
    assert max_rel_error(got, svd_reference(w)) < CONTRACT
    assert got.tobytes() == host.host_esd(w).tobytes()


def assert_bit_identical(a, b) -> None:
    """Same Dataset (``identical``) and equal bytes of every float variable (-0.0 != 0.0)."""
    assert a.identical(b)
    for name in a.data_vars:
        x, y = np.asarray(a[name].values), np.asarray(b[name].values)
        if x.dtype.kind == "f":
            assert x.tobytes() == y.tobytes(), name


def llm_like_model():
    from rmtkit.collection import from_layers

    return from_layers(
        {
            "q": heavy_tailed(96, 96, seed=5),
            "up": heavy_tailed(256, 96, seed=6),
            "down": heavy_tailed(96, 256, seed=7).T.copy(),
            "emb": (heavy_tailed(400, 80, seed=8), "embedding"),
        }
    )


@pytest.mark.slow
@two_stage
def test_the_analysis_through_the_two_stage_route_is_deterministic(monkeypatch):
    """Every layer of a model through the two-stage route (threshold lowered): bit-identical
    details across runs and worker-thread counts, and within the precision contract of the
    one-stage route (numpy's ``eigvalsh``) for the spectra (``lambda_max``)."""
    import rmtkit
    from rmtkit._engine.executor import local_workers

    model = llm_like_model()
    options = dict(randomize=True, mp_fit=True, key=3, progress=False)
    calls, real = [], host._two_stage
    monkeypatch.setattr(host, "_two_stage", lambda: calls.append(1) or real())
    monkeypatch.setattr(host, "TWO_STAGE_FROM", 64)
    with local_workers(1):
        serial = rmtkit.analyze(model, **options)
    with local_workers(2):
        threaded = rmtkit.analyze(model, **options)
    again = rmtkit.analyze(model, **options)
    assert_bit_identical(serial, threaded)
    assert_bit_identical(serial, again)
    assert len(calls) >= 3 * 2 * 4  # 3 runs x (weights + randomized) x 4 layers
    monkeypatch.setattr(host, "TWO_STAGE_FROM", 1 << 30)
    one_stage = rmtkit.analyze(model, **options)
    np.testing.assert_allclose(
        serial.lambda_max.values, one_stage.lambda_max.values, rtol=CONTRACT, atol=0
    )


def test_no_convergence_falls_back_to_svd_values(monkeypatch):
    def failing(layout, jobz, uplo, n, a, lda, w):
        return 3  # LAPACK's info > 0: no convergence

    monkeypatch.setattr(host, "_two_stage", lambda: (failing, int))
    w = heavy_tailed(300, 200, seed=3)
    with pytest.raises(np.linalg.LinAlgError):
        host.eigvalsh64(host.gram64(w), two_stage=True)
    monkeypatch.setattr(host, "TWO_STAGE_FROM", 100)
    np.testing.assert_allclose(host.host_esd(w), svd_reference(w), rtol=1e-9)


def test_without_the_two_stage_solver_numpy_decides(monkeypatch):
    monkeypatch.setattr(host, "_two_stage", lambda: None)
    gram = host.gram64(heavy_tailed(300, 200, seed=4))
    expected = np.linalg.eigvalsh(gram.copy())
    assert host.eigvalsh64(gram, two_stage=True).tobytes() == expected.tobytes()
