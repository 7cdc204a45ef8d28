"""Plots of one layer, from arrays: its ESD and fit, the xmin candidates, the randomized ESD,
the Marchenko-Pastur fit (see :mod:`rmtkit.plot` for the files they write)."""

import math
from pathlib import Path
from typing import Any

import numpy as np

import rmtkit
from rmtkit.core import validate
from rmtkit.plot.style import (
    _TITLES,
    SCALES,
    _axes,
    _bucketed,
    _field,
    _fit_summary,
    _n_bins,
    _pl_density,
    _pl_fit,
    _positive,
    _values,
    layer_file_stem,
    save_figure,
)

__all__ = ["plot_esd", "plot_layer", "plot_mp", "plot_pl_candidates", "plot_randomized"]


def plot_esd(
    evals,
    fit=None,
    *,
    scale: str = "loglog",
    bins: int | None = None,
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""Histogram of one ESD with its power-law fit and :math:`x_{\min}`.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one layer (raw units, any order; NaN entries are ignored).
    fit : PowerLawFit or details row, optional
        Anything with ``alpha``, ``xmin`` (and optionally ``D``, ``num_pl_spikes``) fields: a
        :class:`rmtkit.PowerLawFit`, or one ``layer`` of the :func:`rmtkit.analyze`
        Dataset. Default: ``rmtkit.fit_pl(evals)``. A NaN alpha draws no fit line.
    scale : {"loglog", "linlin", "loglin"}
        "loglog": density on log-spaced bins, log axes, with the fitted density
        :math:`\frac{n_{\rm tail}}{n}\frac{\alpha-1}{x_{\min}}(x/x_{\min})^{-\alpha}` (a straight
        line of slope :math:`-\alpha`); "linlin": linear bins and axes, the same density;
        "loglin": histogram of :math:`\log_{10}\lambda` with the fitted density in
        :math:`\log_{10}` units.
    bins : int, optional
        Number of bins; default :math:`2\sqrt n` clipped to [10, 100].
    ax : matplotlib Axes, optional
        Draw into it (default: a new figure).
    title : str, optional
        Default "Log-Log ESD", "Lin-Lin ESD" or "Log-Lin ESD".
    savefig : path, optional
        PNG file to write (a folder: ``esd_<scale>.png`` inside it).

    Returns
    -------
    matplotlib.figure.Figure
    """
    validate.choice(scale, "scale", SCALES)
    x = _values(evals)
    fit = _pl_fit(x, fit)
    alpha, xmin, ks, n_tail = _fit_summary(fit)
    fig, ax = _axes(ax)
    ok = np.isfinite(alpha) and np.isfinite(xmin) and xmin > 0 and alpha > 1
    label = f"PL fit: α = {alpha:.2f}, D = {ks:.3f}" if ok else "PL fit failed"

    if scale == "loglin":
        data = np.log10(_positive(x))
    elif scale == "loglog":
        data = _positive(x)
    else:
        data = x
    n_fit = _positive(x).size
    if ok and not np.isfinite(n_tail):
        n_tail = float(np.sum(_positive(x) >= xmin))
    share = n_tail / n_fit if n_fit else 0.0
    nb = _n_bins(data.size, bins)

    if data.size == 0:
        ax.text(0.5, 0.5, "no positive eigenvalues", ha="center", transform=ax.transAxes)
    elif scale == "loglog":
        lo, hi = data.min(), data.max()
        edges = np.geomspace(lo, hi if hi > lo else lo * 10, nb + 1)
        dens, edges = np.histogram(data, bins=edges, density=True)
        centers = np.sqrt(edges[:-1] * edges[1:])
        keep = dens > 0
        ax.plot(centers[keep], dens[keep], "o", ms=4, color="C0", label="ESD")
        ax.set_xscale("log")
        ax.set_yscale("log")
        if ok:
            xs = np.geomspace(xmin, max(hi, xmin * 1.01), 100)
            ax.plot(xs, _pl_density(xs, alpha, xmin, share), "-", color="C1", lw=2, label=label)
    elif scale == "linlin":
        dens, edges, _ = ax.hist(data, bins=nb, density=True, color="C0", alpha=0.6, label="ESD")
        if ok:
            xs = np.linspace(xmin, max(data.max(), xmin * 1.01), 200)
            ax.plot(xs, _pl_density(xs, alpha, xmin, share), "-", color="C1", lw=2, label=label)
            ax.set_ylim(0, 1.1 * max(float(np.max(dens)), 1e-300))
    else:
        dens, edges, _ = ax.hist(data, bins=nb, density=True, color="C0", alpha=0.6, label="ESD")
        if ok:
            us = np.linspace(np.log10(xmin), max(data.max(), np.log10(xmin) + 1e-3), 200)
            xs = 10.0**us
            ax.plot(
                us,
                _pl_density(xs, alpha, xmin, share) * xs * math.log(10.0),
                "-",
                color="C1",
                lw=2,
                label=label,
            )
            ax.set_ylim(
                0,
                1.1
                * max(
                    float(np.max(dens)),
                    float(np.max(_pl_density(xs, alpha, xmin, share) * xs * math.log(10.0))),
                ),
            )
    if ok:
        pos = np.log10(xmin) if scale == "loglin" else xmin
        ax.axvline(pos, color="C3", ls="--", label=f"xmin = {xmin:.3g}")
    elif data.size:
        ax.plot([], [], " ", label=label)
    ax.set_xlabel("log10 eigenvalue" if scale == "loglin" else "eigenvalue λ")
    ax.set_ylabel("density")
    ax.set_title(_TITLES[scale] if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, savefig, f"esd_{scale}.png")


def plot_pl_candidates(
    evals,
    fit=None,
    *,
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""KS distance D and alpha of the power-law fit at every candidate :math:`x_{\min}`.

    The curves come from :func:`rmtkit.pl_candidates` (the default search's candidates; those
    the selection rule excludes are not drawn). D is on the left axis, alpha on the right, and
    the chosen :math:`x_{\min}` (``fit``, default ``rmtkit.fit_pl(evals)``) is marked: for the
    default search it sits at the minimum of D. A clear, isolated minimum means a well-defined
    tail; a flat D or a minimum at the very top of the spectrum means a doubtful alpha.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one layer.
    fit : PowerLawFit or details row, optional
        The fit whose :math:`x_{\min}` is marked. Default: ``rmtkit.fit_pl(evals)``.
    ax, title, savefig
        As in :func:`plot_esd` (default file name ``pl_candidates.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _values(evals)
    fit = _pl_fit(x, fit)
    alpha, xmin, ks, _ = _fit_summary(fit)
    cands = _bucketed("pl_candidates", x)
    valid = np.asarray(cands.valid)
    cx = np.asarray(cands.xmin, dtype=np.float64)[valid]
    ca = np.asarray(cands.alpha, dtype=np.float64)[valid]
    cd = np.asarray(cands.D, dtype=np.float64)[valid]
    fig, ax = _axes(ax)
    ax.plot(cx, cd, "-", color="C0", lw=1.5, label="D (KS distance)")
    ax.set_xscale("log")
    ax.set_xlabel("xmin")
    ax.set_ylabel("D", color="C0")
    ax2 = ax.twinx()
    ax2.plot(cx, ca, "-", color="C1", lw=1.5, label="alpha")
    ax2.set_ylabel("alpha", color="C1")
    if ca.size:
        finite = ca[np.isfinite(ca)]
        if finite.size:  # alpha explodes for the last few candidates: keep the plot readable
            ax2.set_ylim(
                max(0.0, float(finite.min()) - 0.5),
                min(float(np.nanpercentile(finite, 95)) + 1.0, 20.0),
            )
    handles = ax.get_lines() + ax2.get_lines()
    if np.isfinite(xmin):
        handles.append(
            ax.axvline(
                xmin,
                color="C3",
                ls="--",
                label=f"xmin = {xmin:.3g} (α = {alpha:.2f}, D = {ks:.3f})",
            )
        )
    if not cx.size:
        ax.text(0.5, 0.5, "no admissible xmin", ha="center", transform=ax.transAxes)
    ax.legend(handles, [h.get_label() for h in handles], loc="upper center", fontsize="small")
    ax.set_title("PL fit for each xmin" if title is None else title)
    return save_figure(fig, savefig, "pl_candidates.png")


def plot_randomized(
    evals,
    rand_evals,
    *,
    max_rand_eval: float | None = None,
    bins: int | None = None,
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""The ESD of the randomized layer over the original one, on :math:`\log_{10}` axes.

    A well-trained layer's ESD extends far beyond its randomized (Marchenko–Pastur-like) ESD.
    A randomized eigenvalue standing apart to the right of the randomized bulk is a
    *correlation trap* (docs/math.md §6): unusually large entries of W; the vertical line marks
    ``max_rand_eval``.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of the layer.
    rand_evals : array
        Eigenvalues of the randomized layer (:func:`rmtkit.randomize` then :func:`rmtkit.esd`),
        same units; several replicas may be stacked (flattened here).
    max_rand_eval : float, optional
        Where to draw the trap line; default ``max(rand_evals)``.
    bins, ax, title, savefig
        As in :func:`plot_esd` (default file name ``randomized.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _positive(_values(evals))
    r = _positive(_values(rand_evals))
    if max_rand_eval is None or not np.isfinite(max_rand_eval):
        max_rand_eval = float(r.max()) if r.size else math.nan
    fig, ax = _axes(ax)
    both = np.log10(np.concatenate([x, r])) if x.size + r.size else np.zeros(1)
    edges = np.histogram_bin_edges(both, bins=_n_bins(max(x.size, r.size), bins))
    if x.size:
        ax.hist(np.log10(x), bins=edges, density=True, color="C2", alpha=0.55, label="original")
    if r.size:
        ax.hist(np.log10(r), bins=edges, density=True, color="C3", alpha=0.45, label="randomized")
    if np.isfinite(max_rand_eval) and max_rand_eval > 0:
        ax.axvline(
            np.log10(max_rand_eval), color="C1", lw=2, label=f"max rand eval = {max_rand_eval:.3g}"
        )
    if x.size:
        ax.axvline(np.log10(x.max()), color="C2", ls=":", label=f"λmax = {x.max():.3g}")
    ax.set_xlabel("log10 eigenvalue")
    ax.set_ylabel("density")
    ax.set_title("Randomized ESD" if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, savefig, "randomized.png")


def plot_mp(
    evals,
    *,
    Q: float,
    fit=None,
    M: int | None = None,
    margin: str = "ww",
    bins: int | None = None,
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""The Marchenko–Pastur fit over the ESD rescaled to mean 1, with the spike edge.

    The spectrum is rescaled as in :func:`rmtkit.mp_fit` (:math:`t = W_{\rm scale}^2\lambda`,
    mean 1), its histogram drawn with the MP density of the fitted :math:`\sigma` and aspect
    ratio ``Q`` (weighted by the bulk's share of the eigenvalues), and vertical lines at the
    bulk edge :math:`\lambda_+` and at the spike edge (eigenvalues beyond it are the
    ``num_spikes`` spikes). The x axis stops a little beyond the spike edge, so the bulk stays
    visible; how many eigenvalues lie further right is written on the plot.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one layer (one slice, or a pooled convolution spectrum).
    Q : float, >= 1
        Aspect ratio N/M of the (oriented) matrix.
    fit : MPFit, optional
        Default: ``rmtkit.mp_fit(evals, Q=Q, M=M, margin=margin)``.
    M, margin
        Passed to ``mp_fit`` when ``fit`` is not given.
    bins, ax, title, savefig
        As in :func:`plot_esd` (default file name ``mp.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _values(evals)
    if fit is None:
        fit = rmtkit.mp_fit(x, Q=Q, M=M, margin=margin)
    sigma = _field(fit, "sigma")
    scale = _field(fit, "W_scale")
    ok = np.isfinite(sigma) and np.isfinite(scale) and sigma > 0
    fig, ax = _axes(ax)
    if not ok:
        total = x.sum()
        t = x * (x.size / total) if total > 0 else x
        ax.hist(
            t,
            bins=_n_bins(t.size, bins),
            density=True,
            color="C0",
            alpha=0.6,
            label="ESD (rescaled)",
        )
        ax.plot([], [], " ", label="MP fit failed")
    else:
        s2 = scale**2
        t = x * s2
        bulk_max = _field(fit, "bulk_max") * s2
        edge = _field(fit, "spike_edge", bulk_max / s2) * s2
        n_spikes = int(np.sum(t > edge)) if np.isfinite(edge) else 0
        upper = max(1.25 * edge, 1.1 * bulk_max) if np.isfinite(edge) else t.max()
        upper = min(upper, t.max() * 1.02) if t.size else upper
        shown = t[t <= upper]
        nb = _n_bins(shown.size, bins)
        # density over all eigenvalues (spikes beyond the x range included in the total)
        ax.hist(
            shown,
            bins=nb,
            range=(0.0, upper),
            weights=np.full(shown.size, nb / (upper * max(t.size, 1))),
            color="C0",
            alpha=0.6,
            label="ESD (rescaled to mean 1)",
        )
        grid = np.linspace(0.0, upper, 400)[1:]
        share = (t.size - n_spikes) / max(t.size, 1)
        pdf = share * np.asarray(rmtkit.mp_pdf(grid, Q=float(Q), sigma=sigma), dtype=np.float64)
        ax.plot(grid, pdf, color="C1", lw=2, label=f"MP fit: σ = {sigma:.3f}, Q = {Q:.3g}")
        ax.axvline(bulk_max, color="C2", ls="--", label=f"bulk edge λ+ = {bulk_max:.3g}")
        if np.isfinite(edge):
            ax.axvline(edge, color="C3", ls="-", label=f"spike edge ({n_spikes} spikes)")
        beyond = int(np.sum(t > upper))
        if beyond:
            ax.text(
                0.98,
                0.6,
                f"{beyond} eigenvalue(s) beyond, max {t.max():.3g} →",
                ha="right",
                transform=ax.transAxes,
                fontsize="small",
            )
        ax.set_xlim(0.0, upper)
    ax.set_xlabel("eigenvalue / mean eigenvalue")
    ax.set_ylabel("density")
    ax.set_title("Marchenko–Pastur fit" if title is None else title)
    ax.legend(loc="upper right", fontsize="small")
    return save_figure(fig, savefig, "mp.png")


def plot_layer(
    evals,
    fit=None,
    *,
    rand_evals=None,
    max_rand_eval: float | None = None,
    Q: float | None = None,
    mp_fit=None,
    M: int | None = None,
    name: str = "layer",
    layer_id: int | None = None,
    slice_id: int | None = None,
    bins: int | None = None,
    savefig=None,
) -> dict[str, Any]:
    """All panels of one layer, one figure each (WeightWatcher's per-layer plots).

    Always ``esd_loglog``, ``esd_linlin``, ``esd_loglin`` (:func:`plot_esd`) and
    ``pl_candidates`` (:func:`plot_pl_candidates`); ``randomized`` (:func:`plot_randomized`)
    when ``rand_evals`` is given; ``mp`` (:func:`plot_mp`) when ``Q`` is given.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of the layer.
    fit : PowerLawFit or details row, optional
        Default: ``rmtkit.fit_pl(evals)`` (computed once, shared by the panels).
    rand_evals, max_rand_eval
        For the randomized panel.
    Q, mp_fit, M
        For the MP panel: aspect ratio (required for it), an MPFit (default: computed), M.
    name, layer_id, slice_id
        Used in the titles and the file names (:func:`layer_file_stem`).
    bins : int, optional
        Bins of the histograms.
    savefig : folder, optional
        Writes ``<stem>_<panel>.png`` for each panel into it.

    Returns
    -------
    dict
        Panel name (:data:`PANELS`) -> Figure.
    """
    x = _values(evals)
    fit = _pl_fit(x, fit)
    stem = layer_file_stem(name, layer_id, slice_id)
    label = name if slice_id is None else f"{name} [slice {slice_id}]"
    if layer_id is not None:
        label = f"{layer_id}: {label}"
    folder = None if savefig is None else Path(savefig)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    def target(panel):
        return None if folder is None else folder / f"{stem}_{panel}.png"

    figs: dict[str, Any] = {}
    for scale in SCALES:
        figs[f"esd_{scale}"] = plot_esd(
            x,
            fit,
            scale=scale,
            bins=bins,
            title=f"{_TITLES[scale]} — {label}",
            savefig=target(f"esd_{scale}"),
        )
    figs["pl_candidates"] = plot_pl_candidates(
        x, fit, title=f"PL fit for each xmin — {label}", savefig=target("pl_candidates")
    )
    if rand_evals is not None:
        figs["randomized"] = plot_randomized(
            x,
            rand_evals,
            max_rand_eval=max_rand_eval,
            bins=bins,
            title=f"Randomized ESD — {label}",
            savefig=target("randomized"),
        )
    if Q is not None:
        figs["mp"] = plot_mp(
            x, Q=Q, fit=mp_fit, M=M, bins=bins, title=f"MP fit — {label}", savefig=target("mp")
        )
    return figs
