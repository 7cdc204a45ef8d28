"""docs/math.md §4 metrics against direct numpy formulas on real SVDs, and their batching."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rmtkit
from rmtkit.testing import matrices_with_spectrum


def numpy_metrics(w: np.ndarray, alpha: float) -> dict:
    """Independent reference: the docs/math.md §4 table written with numpy on the SVD of W."""
    s = np.linalg.svd(w, compute_uv=False)
    return reference_metrics(s**2, alpha, n_rows=max(w.shape))


def reference_metrics(lam: np.ndarray, alpha: float, n_rows: int) -> dict:
    """The docs/math.md §4 table written with numpy on the eigenvalues of W^T W."""
    s = np.sqrt(lam)
    rank = int(np.sum(s > s.max() * n_rows * np.finfo(np.float64).eps))
    p = lam / lam.sum()
    p = p[p > 0]
    return dict(
        lambda_max=lam.max(),
        norm=lam.sum(),
        log_norm=np.log10(lam.sum()),
        log_spectral_norm=np.log10(lam.max()),
        stable_rank=lam.sum() / lam.max(),
        alpha_weighted=alpha * np.log10(lam.max()),
        log_alpha_norm=np.log10(np.sum(lam**alpha)),
        entropy=-np.sum(p * np.log(p)) / np.log(rank),
        matrix_rank=rank,
        rank_loss=lam.size - rank,
        weak_rank_loss=int(np.sum(lam < 1e-6)),
        num_evals=lam.size,
    )


@pytest.mark.parametrize("shape, rank", [((80, 40), None), ((40, 80), None), ((100, 50), 10)])
def test_metrics_match_numpy(shape, rank):
    rng = np.random.default_rng(0)
    w = rng.standard_t(3, size=shape)
    if rank:
        w = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1]))
    alpha = 2.7
    # rank-deficient: the zero singular values must be resolved, which needs the SVD route
    evals = rmtkit.esd(w, method="svd" if rank else "gram")
    got = rmtkit.spectral_metrics(evals, alpha=alpha, n_rows=max(shape), n_cols=min(shape))
    for name, value in numpy_metrics(w, alpha).items():
        np.testing.assert_allclose(float(getattr(got, name)), value, rtol=1e-9, err_msg=name)


@settings(max_examples=10)
@given(matrices_with_spectrum(n_cols=(30,), qs=(1.0, 2.0)), st.floats(1.5, 5.0))
def test_metrics_of_a_prescribed_spectrum(p, alpha):
    # exact reference: the eigenvalues W was built from (no SVD involved)
    n_rows, n_cols = p.w.shape
    got = rmtkit.spectral_metrics(rmtkit.esd(p.w), alpha=alpha, n_rows=n_rows, n_cols=n_cols)
    for name, value in reference_metrics(p.evals, alpha, n_rows).items():
        np.testing.assert_allclose(float(getattr(got, name)), value, rtol=1e-9, err_msg=name)


def test_single_metric_functions_agree_with_the_bundle():
    evals = rmtkit.esd(np.random.default_rng(1).normal(size=(60, 30)))
    bundle = rmtkit.spectral_metrics(evals, alpha=3.0, n_rows=60)
    assert float(rmtkit.stable_rank(evals)) == float(bundle.stable_rank)
    assert float(rmtkit.log_alpha_norm(evals, 3.0)) == pytest.approx(float(bundle.log_alpha_norm))
    assert float(rmtkit.entropy(evals, 60)) == pytest.approx(float(bundle.entropy))
    assert int(rmtkit.matrix_rank(evals, 60)) == 30


def test_log_alpha_norm_does_not_overflow():
    evals = np.array([1e3, 1e5, 1e7])
    got = float(rmtkit.log_alpha_norm(evals, 60.0))
    assert np.isfinite(got)
    assert got == pytest.approx(60 * 7 + np.log10(1 + 1e-120 + 1e-240))


def test_nan_alpha_propagates_only_to_alpha_metrics():
    m = rmtkit.spectral_metrics(np.array([1.0, 2.0, 3.0]), alpha=np.nan, n_rows=3)
    assert np.isnan(float(m.alpha_weighted)) and np.isnan(float(m.log_alpha_norm))
    assert float(m.stable_rank) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "alpha, label",
    [(1.5, "over-trained"), (3.0, ""), (7.0, "under-trained"), (float("nan"), "fit-failed")],
)
def test_alpha_warning(alpha, label):
    assert rmtkit.alpha_warning(alpha) == label


def test_alpha_weighted_is_differentiable():
    w = np.random.default_rng(3).normal(size=(40, 20))
    g = jax.grad(lambda w: rmtkit.alpha_weighted(rmtkit.esd(w), 2.5))(w)
    assert np.isfinite(np.asarray(g)).all()
