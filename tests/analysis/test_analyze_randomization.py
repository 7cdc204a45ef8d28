"""Randomization rows of the analysis: the statistics of the public functions, on the draw the
plots show (one definition of a row's slice, units and key)."""

import jax
import numpy as np
import pytest

import rmtkit
from rmtkit._engine import host as _host
from rmtkit._engine import spectra as _spectra
from rmtkit.analysis import analyze


def test_randomization_statistics_are_those_of_the_public_functions():
    w = np.random.default_rng(5).standard_t(2.5, (260, 130))
    w[3, 4] = 60.0  # a correlation trap
    tree = rmtkit.from_layers({"trap": w})
    row = analyze(tree, randomize=True, key=11, progress=False).isel(layer=0)
    layer_key = jax.random.fold_in(jax.random.key(11), int(row.layer_id))
    rand, top = _spectra.randomized_spectra(w, layer_key)
    evals = _host.host_esd(w)
    with jax.enable_x64(True):
        fit = rmtkit.mp_fit(rand, Q=260 / 130, M=130)
        dist = rmtkit.rand_distance(evals, rand)
    assert int(row.num_traps) == int(fit.num_spikes) >= 1
    assert float(row.rand_bulk_max) == pytest.approx(float(fit.bulk_max), rel=1e-12)
    assert float(row.rand_distance) == pytest.approx(float(dist), rel=1e-12)
    assert float(row.max_rand_eval) == top
    assert float(row.ww_softrank) == pytest.approx(top / evals[-1], rel=1e-12)


def test_unpooled_randomization_is_the_draw_the_plots_show():
    """Per-slice rows: analysis and plots share the slice, its units and its key."""
    w = np.random.default_rng(7).standard_t(3, (200, 120, 2, 2))
    tree = rmtkit.from_layers({"conv": w})
    details = analyze(tree, pool=False, randomize=True, key=2, progress=False)
    drawn = rmtkit.spectra(tree, pool=False, randomize=True, key=2)  # what plot_layers draws
    assert details.sizes["layer"] == 4
    for i in range(4):
        row = details.isel(layer=i)
        rand = drawn["rand_evals"].values[i]
        assert float(row.max_rand_eval) == rand[-1]  # 120 eigenvalues: one replica
