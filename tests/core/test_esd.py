"""rmtkit.esd against float64 numpy SVD (docs/math.md §1: 1e-5 relative for λ >= 1e-6 λmax)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rmtkit
from rmtkit.errors import InvalidWeightsError
from rmtkit.testing import matrices_with_spectrum


def svd_evals(mat: np.ndarray) -> np.ndarray:
    """Reference: squared singular values of a float64 copy, ascending."""
    return np.sort(np.linalg.svd(np.asarray(mat, np.float64), compute_uv=False) ** 2)


def assert_spectrum_close(got, want, rtol=1e-5):
    """docs/math.md §1 contract: relative agreement for eigenvalues >= 1e-6 * lambda_max."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    big = want >= 1e-6 * want.max()
    np.testing.assert_allclose(got[big], want[big], rtol=rtol)
    np.testing.assert_allclose(got[~big], want[~big], atol=1e-6 * want.max())


@pytest.mark.slow
@given(
    shape=st.sampled_from([(50, 20), (20, 50), (64, 64), (300, 100)]),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_dense_matches_float64_svd(shape, seed, scale):
    w = np.random.default_rng(seed).standard_t(3, size=shape) * scale
    assert_spectrum_close(rmtkit.esd(w), svd_evals(w))


@settings(max_examples=10)
@given(matrices_with_spectrum(n_cols=(40,), qs=(1.0, 2.5)), st.booleans())
def test_dense_reproduces_a_prescribed_spectrum(p, transpose):
    # an exact reference, independent of any SVD: W = U diag(sqrt(evals)) V^T, Haar U, V
    w = p.w.T if transpose else p.w
    np.testing.assert_allclose(rmtkit.esd(w), p.evals, rtol=1e-10)
    np.testing.assert_allclose(rmtkit.esd(w, method="svd"), p.evals, rtol=1e-10)
    np.testing.assert_allclose(rmtkit.esd(w, normalize=True), p.evals / max(w.shape), rtol=1e-10)


def test_float32_input_is_computed_in_float64_when_enabled():
    w = np.random.default_rng(0).normal(size=(200, 80)).astype(np.float32)
    got = rmtkit.esd(w)
    assert got.dtype == jnp.float64
    assert_spectrum_close(got, svd_evals(w))


def test_float32_computation_is_accurate_to_float32_eps():
    w = np.random.default_rng(1).normal(size=(200, 80)).astype(np.float32)
    got = rmtkit.esd(w, dtype=jnp.float32)
    assert got.dtype == jnp.float32
    want = svd_evals(w)
    np.testing.assert_allclose(got, want, atol=1e-5 * want.max(), rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_upcast(dtype):
    w = jnp.asarray(np.random.default_rng(2).normal(size=(60, 30)), dtype=dtype)
    got = rmtkit.esd(w)
    assert got.dtype == jnp.float64
    assert_spectrum_close(got, svd_evals(np.asarray(w.astype(jnp.float32))))


def test_rank_deficient_has_tiny_nonnegative_evals():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(100, 5)) @ rng.normal(size=(5, 40))  # rank 5, M = 40
    got = np.asarray(rmtkit.esd(w))
    assert (got >= 0).all()
    assert (got[:35] < 1e-9 * got.max()).all()
    assert_spectrum_close(got, svd_evals(w))


def test_svd_method_resolves_zero_singular_values():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(100, 5)) @ rng.normal(size=(5, 40))
    svd, gram = rmtkit.esd(w, method="svd"), rmtkit.esd(w, method="gram")
    assert_spectrum_close(svd, svd_evals(w))
    assert float(svd[:35].max()) < 1e-26 * float(svd.max())  # exact zeros to eps^2
    np.testing.assert_allclose(svd[35:], gram[35:], rtol=1e-10)
    assert int(rmtkit.matrix_rank(svd, 100)) == 5


def test_normalize_divides_by_the_larger_side():
    w = np.random.default_rng(4).normal(size=(30, 90))
    np.testing.assert_allclose(rmtkit.esd(w, normalize=True), svd_evals(w) / 90, rtol=1e-10)


def conv_slices(w):
    """Reference slicing: W[:, :, i, j] (or W[:, :, i]) in row-major kernel order."""
    return [w[(slice(None), slice(None)) + idx] for idx in np.ndindex(*w.shape[2:])]


@pytest.mark.parametrize(
    "shape", [(32, 16, 3, 3), (16, 32, 3, 3), (20, 20, 2, 2), (24, 12, 5), (12, 24, 5)]
)
def test_conv_pooled_is_all_slices_times_half(shape):
    w = np.random.default_rng(5).normal(size=shape)
    want = np.sort(np.concatenate([svd_evals(s) for s in conv_slices(w)])) * 0.5
    got = rmtkit.esd(w)
    assert got.shape == (min(shape[:2]) * int(np.prod(shape[2:])),)
    assert_spectrum_close(got, want)


@pytest.mark.parametrize("shape", [(32, 16, 3, 3), (12, 24, 5)])
def test_conv_unpooled_is_one_row_per_slice_times_rf_half(shape):
    w = np.random.default_rng(6).normal(size=shape)
    rf = int(np.prod(shape[2:]))
    got = rmtkit.esd(w, pool=False)
    assert got.shape == (rf, min(shape[:2]))
    for row, s in zip(np.asarray(got), conv_slices(w), strict=True):
        assert_spectrum_close(row, svd_evals(s) * rf / 2)


@settings(max_examples=10)
@given(
    st.lists(matrices_with_spectrum(n_cols=(12,), qs=(2.0,)), min_size=4, max_size=4), st.booleans()
)
def test_conv_reproduces_prescribed_slice_spectra(kernels, transpose):
    # slice (i, j) of a 2x2 kernel is kernels[2 i + j] (row-major kernel order)
    mats = [p.w.T if transpose else p.w for p in kernels]
    w = np.stack(mats, axis=-1).reshape(*mats[0].shape, 2, 2)
    pooled = np.sort(np.concatenate([p.evals for p in kernels])) * 0.5
    np.testing.assert_allclose(rmtkit.esd(w), pooled, rtol=1e-10)
    unpooled = np.stack([p.evals for p in kernels]) * 4 * 0.5  # rf * conv_norm
    np.testing.assert_allclose(rmtkit.esd(w, pool=False), unpooled, rtol=1e-10)


def test_conv_norm_knob():
    w = np.random.default_rng(7).normal(size=(8, 8, 3, 3))
    np.testing.assert_allclose(rmtkit.esd(w, conv_norm=1.0), 2 * rmtkit.esd(w), rtol=1e-12)


def test_esd_is_ascending():
    # jit and vmap of esd: tests/core/test_conformance.py
    for w in np.random.default_rng(8).normal(size=(4, 40, 20)):
        assert (np.diff(np.asarray(rmtkit.esd(w))) >= 0).all()


def test_esd_gradient_is_finite():
    w = jnp.asarray(np.random.default_rng(9).normal(size=(30, 10)))
    g = jax.grad(lambda w: rmtkit.esd(w).max())(w)
    assert np.isfinite(np.asarray(g)).all()
    # d(lambda_max)/dW = 2 s u v^T has Frobenius norm 2 s
    s = np.linalg.svd(np.asarray(w), compute_uv=False)[0]
    np.testing.assert_allclose(np.linalg.norm(np.asarray(g)), 2 * s, rtol=1e-8)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones(5), "2-D"),
        (np.ones((2, 2, 2, 2, 2)), "2-D"),
        (np.ones((0, 3)), "empty"),
        (np.ones((3, 3), dtype=complex), "real numbers"),
    ],
)
def test_bad_weights_raise(bad, match):
    with pytest.raises(InvalidWeightsError, match=match):
        rmtkit.esd(bad)


def test_bucket_lengths_are_few_and_bounded():
    lengths = {rmtkit.bucket_length(n) for n in range(1, 20_001)}
    assert len(lengths) <= 20
    for n in (1, 63, 64, 65, 1000, 4097, 20_000):
        b = rmtkit.bucket_length(n)
        assert n <= b <= max(64, 1.5 * n)


def test_bucket_lengths_grow_from_the_smallest_minimum():
    # min_length 1 once looped forever (1 * 3 // 2 == 1); every length is reached and kept
    assert [rmtkit.bucket_length(n, min_length=1) for n in range(1, 9)] == [1, 2, 3, 4, 6, 6, 8, 8]


def test_pad_spectra_masks_padding():
    padded, mask = rmtkit.pad_spectra([np.arange(3.0), np.arange(70.0)])
    assert padded.shape == mask.shape == (2, 96)
    assert mask.sum(axis=1).tolist() == [3, 70]
    assert (padded[~mask] == 0).all()
