"""rmtkit.intra_matrix and rmtkit.stacked_matrix (docs/math.md §11.4), WeightWatcher 0.7.7's
definitions."""

import numpy as np
import pytest

import rmtkit
from rmtkit.core.crosslayer import align_pair
from rmtkit.errors import InvalidWeightsError


def test_align_pair_is_weightwatchers_rule():
    assert align_pair((256, 288), (128, 256)) == (True, True)  # torch fc1, fc2: W0^T W1^T
    assert align_pair((10, 20), (20, 30)) == (False, False)
    assert align_pair((20, 10), (20, 30)) == (True, False)
    assert align_pair((10, 20), (30, 40)) is None  # nothing shared
    assert align_pair((20, 20), (5, 7)) is None  # shared size only within W0


def test_intra_matrix_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 9))
    x = np.asarray(rmtkit.intra_matrix(a, b))
    np.testing.assert_allclose(x, a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), rtol=1e-12)
    s = (rng.random((5, 5)) < 0.5).astype(float)
    xs = np.asarray(rmtkit.intra_matrix(a, b, sparsity=s))
    norm = np.linalg.norm(a) * np.linalg.norm(b) + np.sqrt(np.linalg.norm(s))
    np.testing.assert_allclose(xs, a @ s @ b / norm, rtol=1e-12)
    # torch layouts (out, in): fc1 (256, 288) then fc2 (128, 256) chain as fc1^T fc2^T
    w1, w2 = rng.standard_normal((16, 12)), rng.standard_normal((8, 16))
    np.testing.assert_allclose(
        rmtkit.intra_matrix(w1, w2), w1.T @ w2.T / (np.linalg.norm(w1) * np.linalg.norm(w2))
    )


def test_stacked_matrix_closed_form():
    a = np.array([[1.0, 2.0], [3.0, 5.0], [2.0, 4.0]])
    b = np.array([[1.0, 2.0, 3.0]])
    out = np.asarray(rmtkit.stacked_matrix([a, np.vstack([b, 2 * b])]))
    med = np.median(a)
    mad = np.median(np.abs(a - np.median(a, axis=0)), axis=0)
    za = (a - med) / mad
    bb = np.vstack([b, 2 * b])
    zb = (bb - np.median(bb)) / np.median(np.abs(bb - np.median(bb, axis=0)), axis=0)
    expected = np.vstack([np.pad(za, ((0, 0), (0, 1))), zb])  # 5 x 3: rows >= columns
    np.testing.assert_allclose(out, expected)
    wide = np.asarray(rmtkit.stacked_matrix([np.arange(1.0, 9.0).reshape(2, 4) ** 2]))
    assert wide.shape == (4, 2)  # transposed to N >= M


@pytest.mark.bad_input
def test_bad_input():
    with pytest.raises(InvalidWeightsError, match="chain"):
        rmtkit.intra_matrix(np.ones((3, 4)), np.ones((5, 6)))
    with pytest.raises(InvalidWeightsError, match="sparsity"):
        rmtkit.intra_matrix(np.ones((3, 4)), np.ones((4, 6)), sparsity=np.ones((3, 3)))
    with pytest.raises(InvalidWeightsError, match="empty"):
        rmtkit.stacked_matrix([])


def test_non_finite_or_zero_mad_gives_nan():
    flat = np.ones((4, 3))  # every column's MAD is 0
    assert np.isnan(np.asarray(rmtkit.stacked_matrix([flat]))).all()
    a = np.random.default_rng(0).standard_normal((5, 3))
    a[1, 1] = np.nan
    assert np.isnan(np.asarray(rmtkit.intra_matrix(a, np.ones((3, 4))))).all()
