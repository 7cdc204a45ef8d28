"""rmtkit's likelihood ratios against the ``powerlaw`` package (1.4.6, the last release of the 1.x
line, whose fits are not bounded), on the same tail (docs/math.md §12). Test-only reference."""

import warnings

import numpy as np
import pytest
from _deps import require
from test_gof_csn import ALTERNATIVES, TABLES, load

import rmtkit

powerlaw = require("powerlaw")


def _powerlaw_models(cmp):
    """powerlaw's distributions at rmtkit's fitted parameters (no fitting on powerlaw's side)."""
    xmin = float(cmp.xmin)
    kw = dict(xmin=xmin, discrete=False)
    return {
        "pl": powerlaw.Power_Law(parameters=[float(cmp.alpha)], **kw),
        "lognormal": powerlaw.Lognormal(parameters=[float(cmp.mu), float(cmp.sigma)], **kw),
        "exponential": powerlaw.Exponential(parameters=[float(cmp.Lambda_exp)], **kw),
        "stretched_exp": powerlaw.Stretched_Exponential(
            parameters=[float(cmp.Lambda_se), float(cmp.beta)], **kw
        ),
        "tpl": powerlaw.Truncated_Power_Law(
            parameters=[float(cmp.alpha_tpl), float(cmp.Lambda_tpl)], **kw
        ),
    }


@pytest.mark.parametrize("name", ["blackouts", "lognormal_sample"])
def test_powerlaw_loglikelihood_ratio_at_the_same_fit(name):
    # powerlaw's densities and its loglikelihood_ratio, at rmtkit's MLEs on the same tail:
    # the same R and p to 1e-6 (normalised ratio for the non-nested alternatives, raw for
    # the TPL with the nested chi-square p-value)
    if name == "blackouts":
        x, xmin = load("blackouts"), 230.0
    else:
        x, xmin = np.exp(np.random.default_rng(0).normal(0.0, 1.0, 400)), 1.0
    cmp = rmtkit.pl_compare(x, xmin=xmin)
    tail = np.sort(x[x >= float(cmp.xmin)])
    models = _powerlaw_models(cmp)
    ll_pl = models["pl"].loglikelihoods(tail)
    assert ll_pl.sum() == pytest.approx(float(cmp.loglik_pl), rel=1e-9)
    for alt in ALTERNATIVES:
        ll_alt = np.asarray(models[alt].loglikelihoods(tail), dtype=float)
        assert ll_alt.sum() == pytest.approx(float(getattr(cmp, f"loglik_{alt}")), rel=1e-7)
        nested = alt == "tpl"
        r, p = powerlaw.loglikelihood_ratio(
            ll_pl, ll_alt, nested=nested, normalized_ratio=not nested
        )
        assert float(getattr(cmp, f"R_{alt}")) == pytest.approx(r, abs=1e-6)
        assert float(getattr(cmp, f"p_{alt}")) == pytest.approx(p, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blackouts", "flares"])
def test_powerlaw_own_fits_at_the_same_xmin(name):
    # powerlaw fits by Nelder-Mead (xtol 1e-4) from its own starts: rmtkit's maxima are at
    # least as high, and where powerlaw's search converges the ratios agree
    x = load(name)
    xmin = float(TABLES["table_6_1"][name]["xmin"])
    cmp = rmtkit.pl_compare(x, xmin=xmin)
    with warnings.catch_warnings():  # powerlaw's own numpy warnings (log of 0 etc.)
        warnings.simplefilter("ignore")
        fit = powerlaw.Fit(x, xmin=xmin, discrete=False, verbose=False)
        compared = {
            alt: fit.distribution_compare("power_law", pl_name, normalized_ratio=alt != "tpl")
            for alt, pl_name in _NAMES.items()
        }
    for alt, pl_name in _NAMES.items():
        ll = float(getattr(fit, pl_name).loglikelihood)
        assert float(getattr(cmp, f"loglik_{alt}")) >= ll - 1e-6, alt
        assert float(getattr(cmp, f"R_{alt}")) == pytest.approx(compared[alt][0], abs=2e-3), alt


_NAMES = {"lognormal": "lognormal", "exponential": "exponential", "tpl": "truncated_power_law"}
