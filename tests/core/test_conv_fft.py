"""rmtkit.conv2d_fft_svals (docs/math.md §11.3): the singular values of the explicit
periodic convolution operator (Sedghi, Gupta & Long 2019)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rmtkit
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.testing import seeds


def circulant_operator(k: np.ndarray, n: int) -> np.ndarray:
    """The (fan_out n^2) x (fan_in n^2) matrix of y[o, a, b] = sum_{i, x, y} K[o, i, x, y]
    in[i, (a + x) mod n, (b + y) mod n] (periodic cross-correlation), built entry by entry."""
    fan_out, fan_in, kh, kw = k.shape
    t = np.zeros((fan_out * n * n, fan_in * n * n))
    for o in range(fan_out):
        for a in range(n):
            for b in range(n):
                row = (o * n + a) * n + b
                for i in range(fan_in):
                    for x in range(kh):
                        for y in range(kw):
                            t[row, (i * n + (a + x) % n) * n + (b + y) % n] += k[o, i, x, y]
    return t


@given(
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    st.sampled_from((3, 4, 5)),
    seeds(),
)
def test_equals_the_explicit_operator(shape, n, rng):
    if max(shape[2:]) > n:
        return
    k = rng.standard_normal(shape)
    expected = np.sort(np.linalg.svd(circulant_operator(k, n), compute_uv=False))
    got = np.asarray(rmtkit.conv2d_fft_svals(k, n=n))
    assert got.size == n * n * min(shape[0], shape[1])
    # the operator's singular values are got's, plus zeros when fan_out != fan_in
    np.testing.assert_allclose(expected[-got.size :], got, atol=1e-10 * max(1.0, got.max()))
    np.testing.assert_allclose(rmtkit.conv2d_fft_esd(k, n=n), got**2, rtol=1e-12)


def test_a_one_by_one_kernel_is_its_matrix_repeated():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3))
    s = np.asarray(rmtkit.conv2d_fft_svals(w[:, :, None, None], n=4))
    expected = np.sort(np.tile(np.linalg.svd(w, compute_uv=False), 16))
    np.testing.assert_allclose(s, expected, rtol=1e-12)


def test_frobenius_identity():
    """sum of s^2 over frequencies = n^2 ||K||_F^2 (Parseval)."""
    k = np.random.default_rng(1).standard_normal((4, 6, 3, 3))
    s = np.asarray(rmtkit.conv2d_fft_svals(k))
    assert np.sum(s**2) == pytest.approx(32 * 32 * np.sum(k**2), rel=1e-10)


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidWeightsError, match="conv2d"):
        rmtkit.conv2d_fft_svals(np.ones((3, 3)))
    with pytest.raises(InvalidArgumentError, match="grid"):
        rmtkit.conv2d_fft_svals(np.ones((2, 2, 5, 5)), n=4)


def test_non_finite_kernel_gives_nan():
    k = np.ones((2, 2, 3, 3))
    k[0, 1, 2, 2] = np.inf
    assert np.isnan(np.asarray(rmtkit.conv2d_fft_svals(k, n=4))).all()
