"""Figures of one layer's goodness of fit (docs/math.md §12), from arrays: the bootstrap
distribution of the KS distance with the observed one, and the tail's empirical CCDF with the
fitted power law and its four alternatives. Computed through the public API only."""

import numpy as np

import rmtkit
from rmtkit.core.gof import PL_P_THRESHOLD
from rmtkit.plot.style import _axes, _values, save_figure

__all__ = ["plot_gof", "plot_gof_bootstrap", "plot_tail_models"]

#: line style of each model of :data:`rmtkit.core.gof.TAIL_MODELS` in :func:`plot_tail_models`
_STYLES = {
    "power_law": dict(color="C3", lw=2.0, ls="-", label="power law"),
    "lognormal": dict(color="C0", lw=1.5, ls="--", label="lognormal"),
    "exponential": dict(color="C2", lw=1.5, ls=":", label="exponential"),
    "stretched_exp": dict(color="C4", lw=1.5, ls="-.", label="stretched exp."),
    "tpl": dict(color="C1", lw=1.5, ls=(0, (5, 1, 1, 1)), label="truncated PL"),
}


def plot_gof_bootstrap(pvalue, *, bins: int = 30, ax=None, title=None, savefig=None):
    r"""Histogram of the synthetic KS distances :math:`D_b` of :func:`rmtkit.pl_pvalue`, with
    the observed :math:`D`; the share of the histogram at or right of the line is the p-value.

    Parameters
    ----------
    pvalue : PowerLawPValue
        A result of :func:`rmtkit.pl_pvalue` (one spectrum).
    bins, ax, title, savefig
        Number of bins; as in :func:`rmtkit.plot_esd` (default file name
        ``gof_bootstrap.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    d_boot = _values(pvalue.D_boot)
    d_obs = float(pvalue.D)
    fig, ax = _axes(ax)
    if d_boot.size:
        ax.hist(d_boot, bins=bins, color="C0", alpha=0.6, label=f"synthetic D ({d_boot.size})")
    if np.isfinite(d_obs):
        ax.axvline(d_obs, color="C3", lw=2, label=f"observed D = {d_obs:.3g}")
    p, se = float(pvalue.p_value), float(pvalue.se)
    verdict = "" if not np.isfinite(p) else (" (not a power law)" if p <= PL_P_THRESHOLD else "")
    ax.set_xlabel("KS distance D")
    ax.set_ylabel("replicates")
    ax.set_title(
        (f"Bootstrap: p = {p:.3f} ± {se:.3f}{verdict}" if np.isfinite(p) else "Bootstrap: no test")
        if title is None
        else title
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    return save_figure(fig, savefig, "gof_bootstrap.png")


def plot_tail_models(evals, comparison, *, ax=None, title=None, savefig=None):
    r"""The empirical CCDF :math:`P(X \ge x \mid X \ge x_{\min})` of the tail on log axes, with
    the CCDFs of the models :func:`rmtkit.pl_compare` fitted to it (:func:`rmtkit.tail_ccdf`):
    power law, lognormal, exponential, stretched exponential, truncated power law; the legend
    gives each alternative's likelihood ratio R (R < 0: the alternative fits better).

    Parameters
    ----------
    evals : array, shape (n,)
        The spectrum (NaN padding ignored).
    comparison : PowerLawComparison
        :func:`rmtkit.pl_compare` of ``evals``.
    ax, title, savefig
        As in :func:`rmtkit.plot_esd` (default file name ``gof_tail.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _values(evals)
    fig, ax = _axes(ax)
    xmin = float(comparison.xmin)
    if bool(comparison.ok):
        tail = x[x >= xmin]
        ccdf = 1.0 - np.arange(tail.size) / tail.size  # P(X >= x_i)
        ax.loglog(tail, ccdf, ".", color="k", ms=3, label=f"data ({tail.size} above xmin)")
        grid = np.geomspace(xmin, tail.max(), 200)
        for model, style in _STYLES.items():
            style = dict(style)
            if model != "power_law":
                r = float(getattr(comparison, f"R_{model}"))
                style["label"] += f" (R = {r:.2f})"
            ax.loglog(grid, np.asarray(rmtkit.tail_ccdf(grid, comparison, model)), **style)
        ax.set_ylim(0.5 / tail.size, 1.5)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("P(X ≥ x | X ≥ xmin)")
    ax.set_title("Tail and fitted models" if title is None else title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize="small")
    return save_figure(fig, savefig, "gof_tail.png")


def plot_gof(evals, *, key, n_boot: int = 2500, xmin_method: str = "search", savefig=None):
    """Both goodness-of-fit figures of one spectrum (:func:`plot_gof_bootstrap`,
    :func:`plot_tail_models`), computing :func:`rmtkit.pl_pvalue` and
    :func:`rmtkit.pl_compare`; with ``savefig`` a folder, ``gof_bootstrap.png`` and
    ``gof_tail.png`` in it. Returns the two figures."""
    x = _values(evals)
    pvalue = rmtkit.pl_pvalue(x, key=key, n_boot=n_boot, xmin_method=xmin_method)
    comparison = rmtkit.pl_compare(x, xmin_method=xmin_method)
    return (
        plot_gof_bootstrap(pvalue, savefig=savefig),
        plot_tail_models(x, comparison, savefig=savefig),
    )
