"""The device (GPU) spectrum route, forced on the CPU backend: agreement with the host route."""

import numpy as np
import pytest
import scipy.linalg

import rmtkit
from rmtkit._engine import device as _device
from rmtkit._engine import host as _host
from rmtkit._engine import spectra as _spectra
from rmtkit.analysis import analyze


def svd_evals(a: np.ndarray) -> np.ndarray:
    s = scipy.linalg.svd(np.asarray(a, np.float64), compute_uv=False)
    return np.sort(s * s)


def test_well_conditioned_slices_stay_float32_and_match_to_its_precision():
    w = np.random.default_rng(0).standard_normal((600, 150)).astype(np.float32)  # Q = 4
    ev = _device.device_esd(w)
    ref = svd_evals(w)
    assert not _device._unresolved(ev[None, :], float(np.finfo(np.float32).eps)).any()
    np.testing.assert_allclose(ev, ref, rtol=0, atol=50 * np.finfo(np.float32).eps * ref[-1])
    np.testing.assert_allclose(ev[-1], ref[-1], rtol=2e-6)


def test_ill_conditioned_slices_are_recomputed_in_float64():
    w = np.random.default_rng(1).standard_normal((200, 200)).astype(np.float32)  # Q = 1
    ev = _device.device_esd(w)
    ref = svd_evals(w)
    assert ref[0] < _device.RESOLVE * 200 * np.finfo(np.float32).eps * ref[-1]  # premise
    np.testing.assert_allclose(ev, ref, rtol=1e-7, atol=1e-12 * ref[-1])


def test_rank_deficient_slices_get_svd_values():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((150, 10)) @ rng.standard_normal((10, 90))
    ev = _device.device_esd(w)
    np.testing.assert_allclose(ev, svd_evals(w), rtol=1e-9, atol=1e-12 * ev[-1])


@pytest.mark.parametrize("pool", [True, False])
def test_conv_conventions_are_those_of_the_host_route(pool):
    w = np.random.default_rng(3).standard_normal((64, 16, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(
        _device.device_esd(w, pool=pool),
        _host.host_esd(w, pool=pool),
        rtol=1e-5,
        atol=1e-5 * _host.host_esd(w).max(),
    )


def test_analyze_on_the_device_route_agrees_with_the_host_route(monkeypatch):
    rng = np.random.default_rng(4)
    tree = rmtkit.from_layers(
        {
            "tall": rng.standard_t(3, (480, 120)).astype(np.float32),
            "square": rng.standard_t(3, (160, 160)).astype(np.float32),
            "conv": rng.standard_t(3, (40, 20, 3, 3)).astype(np.float32),
        }
    )
    monkeypatch.setenv(_spectra.DEVICE_ENV, "0")
    host = analyze(tree, progress=False)
    monkeypatch.setenv(_spectra.DEVICE_ENV, "1")
    assert _spectra.use_device()
    dev = analyze(tree, progress=False)
    for name in ("matrix_rank", "rank_loss", "weak_rank_loss", "num_evals", "num_pl_spikes"):
        np.testing.assert_array_equal(dev[name].values, host[name].values, err_msg=name)
    for name in ("alpha", "xmin", "lambda_max", "log_norm", "stable_rank", "alpha_weighted"):
        np.testing.assert_allclose(dev[name].values, host[name].values, rtol=1e-4, err_msg=name)
    assert list(dev.warning.values) == list(host.warning.values)
