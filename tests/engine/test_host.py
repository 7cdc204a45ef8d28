"""Host (numpy) spectra of the analysis against the JAX ESD of the math layer and float64 SVD."""

import numpy as np
import pytest

from rmtkit._engine.host import host_esd, host_slices
from rmtkit.core.esd import esd, slices


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("shape", [(90, 40), (40, 90), (12, 20, 3), (20, 12, 3, 3), (8, 16, 2, 2)])
@pytest.mark.parametrize("pool", [True, False])
def test_host_esd_matches_esd(shape, pool):
    w = rng(1).normal(size=shape).astype(np.float32)
    w[0] *= 30.0  # a spread spectrum
    np.testing.assert_array_equal(host_slices(w), np.asarray(slices(w)))
    ours = host_esd(w, pool=pool)
    ref = np.asarray(esd(w.astype(np.float64), pool=pool))
    assert ours.dtype == np.float64 and ours.shape == ref.shape
    big = ref >= 1e-6 * ref.max()
    np.testing.assert_allclose(ours[big], ref[big], rtol=1e-9)
    # and against float64 SVD values directly (docs/math.md §1: 1e-5 relative, lambda >= 1e-6 max)
    s = np.sort(np.linalg.svd(np.asarray(slices(w.astype(np.float64))), compute_uv=False) ** 2)
    rf = s.shape[0]
    want = s[0] if w.ndim == 2 else (np.sort(s.ravel()) * 0.5 if pool else np.sort(s, 1) * rf / 2)
    np.testing.assert_allclose(ours, want.reshape(ours.shape), rtol=1e-9, atol=1e-12 * want.max())


def test_host_esd_normalize():
    w = rng(2).normal(size=(70, 30))
    np.testing.assert_allclose(
        host_esd(w, normalize=True), np.asarray(esd(w, normalize=True)), rtol=1e-10
    )
