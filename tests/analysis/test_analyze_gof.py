"""analyze(gof=True): the goodness-of-fit columns, labels and summary (docs/math.md §12)."""

import jax
import numpy as np
import pytest
from helpers import GOF_COLUMNS

import rmtkit
from rmtkit.collection import from_layers
from rmtkit.core.gof import GOF_MIN_TAIL
from rmtkit.errors import InvalidArgumentError, RowWarning

N_BOOT = 20


def layers():
    rng = np.random.default_rng(0)
    return {
        "heavy": rng.standard_t(1.5, size=(400, 200)),  # heavy-tailed ESD
        "gauss": rng.normal(size=(300, 150)),  # Marchenko-Pastur: no power-law tail
        "tiny": rng.normal(size=(100, 20)),  # 20 eigenvalues: too-few-evals
    }


@pytest.fixture(scope="module")
def details():
    return rmtkit.analyze(from_layers(layers()), gof=True, n_boot=N_BOOT, key=3, progress=False)


def test_columns_labels_and_summary(details):
    for name in GOF_COLUMNS:
        assert name in details.data_vars
    rows = {str(n): i for i, n in enumerate(details["name"].values)}
    tiny = details.isel(layer=rows["tiny"])
    assert str(tiny["warning"].values) == RowWarning.TOO_FEW_EVALS
    assert all(np.isnan(float(tiny[v])) for v in GOF_COLUMNS)
    for name in ("heavy", "gauss"):
        row = details.isel(layer=rows[name])
        p = float(row["pl_pvalue"])
        assert 0.0 <= p <= 1.0 and float(row["pl_pvalue_se"]) >= 0.0
        expected = (
            RowWarning.NOT_POWER_LAW if p <= 0.1 else rmtkit.alpha_warning(float(row["alpha"]))
        )
        assert str(row["warning"].values) == expected
    s = rmtkit.summary(details)
    p = details["pl_pvalue"].values
    assert int(s["num_pl_tested"]) == 2
    assert int(s["num_pl_pass"]) == int(np.sum(p[np.isfinite(p)] > 0.1))
    assert details.attrs["gof"] == "True" and details.attrs["n_boot"] == N_BOOT


def test_values_are_the_core_functions_on_the_row_spectrum(details):
    # the kernel's row is pl_pvalue / pl_compare of the padded spectrum with the row's key
    spectra = rmtkit.spectra(from_layers(layers()))
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(3), 0x60F), 0)  # layer 0
    evals = spectra.isel(layer=0).values
    evals = evals[np.isfinite(evals)]
    padded = np.concatenate([evals, np.ones(256 - evals.size)])
    mask = np.arange(256) < evals.size
    p = rmtkit.pl_pvalue(padded, mask, key=jax.random.fold_in(key, 0), n_boot=N_BOOT)
    c = rmtkit.pl_compare(padded, mask)
    row = details.isel(layer=0)
    assert float(row["pl_pvalue"]) == float(p.p_value)
    assert float(row["pl_pvalue_se"]) == float(p.se)
    assert float(row["R_lognormal"]) == pytest.approx(float(c.R_lognormal), rel=1e-9)
    assert float(row["R_tpl"]) == pytest.approx(float(c.R_tpl), rel=1e-9)
    assert int(row["num_pl_spikes"]) >= GOF_MIN_TAIL


def test_a_layer_does_not_depend_on_the_others(details):
    alone = rmtkit.analyze(
        from_layers({"heavy": layers()["heavy"]}), gof=True, n_boot=N_BOOT, key=3, progress=False
    )
    for name in GOF_COLUMNS:
        assert float(alone[name][0]) == float(details[name][0]) or (
            np.isnan(float(alone[name][0])) and np.isnan(float(details[name][0]))
        )


def test_fit_columns_are_unchanged_by_gof(details):
    plain = rmtkit.analyze(from_layers(layers()), progress=False)
    for name in plain.data_vars:
        if name != "warning":
            np.testing.assert_array_equal(plain[name].values, details[name].values)
    assert not any(v in plain.data_vars for v in GOF_COLUMNS)


def test_short_tail_row():
    # a spectrum whose fitted tail has fewer than 10 eigenvalues: no test, never a p-value
    x = np.concatenate([np.linspace(1.0, 2.0, 60), [50.0, 80.0, 120.0, 200.0, 400.0]])
    w = np.diag(np.sqrt(x))
    d = rmtkit.analyze(from_layers({"w": w}), gof=True, n_boot=N_BOOT, progress=False)
    if int(d["num_pl_spikes"][0]) < GOF_MIN_TAIL:
        assert str(d["warning"].values[0]) == RowWarning.SHORT_TAIL
        assert all(np.isnan(float(d[v][0])) for v in GOF_COLUMNS)
        assert np.isfinite(float(d["alpha"][0]))
    else:  # the fit chose a longer tail: then it is tested
        assert np.isfinite(float(d["pl_pvalue"][0]))


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(gof=True, n_boot=0),
        dict(gof=True, n_boot=-5),
        dict(gof=True, n_boot=2.5),
        dict(gof="yes"),
        dict(gof=True, fit="TPL"),
        dict(gof=True, fix_fingers="clip_xmax"),
        dict(gof=True, xmax=-2),
    ],
)
def test_bad_options_are_refused_before_reading(kwargs):
    with pytest.raises(InvalidArgumentError):
        rmtkit.analyze(from_layers(layers()), progress=False, **kwargs)
