r"""Plots of spectra, fits and model-level metrics (matplotlib, works headless).

Per layer (pure inputs: eigenvalues and fits; a fit is computed only when none is given):

- :func:`plot_esd` — the ESD on log-log, lin-lin or log-lin axes with the power-law fit and
  :math:`x_{\min}` (WeightWatcher's ``esd1 .. esd3``);
- :func:`plot_pl_candidates` — KS distance D and alpha against every candidate :math:`x_{\min}`
  (``esd4``);
- :func:`plot_randomized` — the ESD of the randomized layer over the original, with the largest
  randomized eigenvalue (correlation-trap line);
- :func:`plot_mp` — the Marchenko–Pastur fit over the bulk of the spectrum rescaled to mean 1,
  with the spike edge;
- :func:`plot_layer` — all of the above for one layer, one figure per panel.

Per model (from the :func:`rmtkit.analyze` Dataset, dim ``layer``):

- :func:`plot_correlation_flow` — alpha against ``layer_id``, marker by layer kind, one series
  per entry of any other dim (``model``, ``epoch``);
- :func:`plot_alpha_hist` — histograms of the layer alphas, one per entry of a ``model`` dim;
- :func:`plot_model` — both (and, given the weights, every layer's panels);
- :func:`plot_layers` — the per-layer panels of every analyzed layer of a model.

Every function returns :class:`matplotlib.figure.Figure` objects (or dicts of them) built
without pyplot, so nothing is shown, no global figure state is touched and no backend is
switched: it works on a headless machine and leaves an interactive session's backend alone
(Jupyter displays a returned Figure). ``savefig`` writes PNG files with predictable names:

==========================================  ===========================================
file                                        figure
==========================================  ===========================================
``<layer_id>_<name>_esd_loglog.png``        :func:`plot_esd` ``scale="loglog"``
``<layer_id>_<name>_esd_linlin.png``        :func:`plot_esd` ``scale="linlin"``
``<layer_id>_<name>_esd_loglin.png``        :func:`plot_esd` ``scale="loglin"``
``<layer_id>_<name>_pl_candidates.png``     :func:`plot_pl_candidates`
``<layer_id>_<name>_randomized.png``        :func:`plot_randomized`
``<layer_id>_<name>_mp.png``                :func:`plot_mp`
``correlation_flow.png``                    :func:`plot_correlation_flow`
``alpha_hist.png``                          :func:`plot_alpha_hist`
==========================================  ===========================================

``<name>`` is the layer path with every character outside ``[A-Za-z0-9_.-]`` replaced by
``_`` (``encoder/layer_0/attn`` -> ``encoder_layer_0_attn``); unpooled convolution slices
(``slice_id``) add ``_slice<k>`` to it.

Units: eigenvalues as :func:`rmtkit.esd` gives them (raw, :math:`\lambda = s^2`). Log axes
show the eigenvalues the power-law fit uses (:math:`\lambda > 10^{-5}`, SPEC §2).

Needs matplotlib: ``pip install 'rmtkit[plot]'``.
"""

import functools
import itertools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import matplotlib
    from matplotlib.figure import Figure
except ModuleNotFoundError as err:  # pragma: no cover - exercised only without matplotlib
    raise ModuleNotFoundError(
        "rmtkit.plot needs matplotlib: pip install 'rmtkit[plot]'") from err

from rmtkit.errors import InvalidArgumentError
from rmtkit.powerlaw import EVALS_THRESH

__all__ = [
    "PANELS",
    "layer_file_stem",
    "plot_alpha_hist",
    "plot_correlation_flow",
    "plot_esd",
    "plot_layer",
    "plot_layers",
    "plot_model",
    "plot_mp",
    "plot_pl_candidates",
    "plot_randomized",
]

#: per-layer panels, in the order :func:`plot_layer` draws them (file name suffixes)
PANELS = ("esd_loglog", "esd_linlin", "esd_loglin", "pl_candidates", "randomized", "mp")
SCALES = ("loglog", "linlin", "loglin")
#: HT-SR range of a well-trained layer (SPEC §4 warnings)
ALPHA_LOW, ALPHA_HIGH = 2.0, 6.0

#: ``warning`` labels of the analysis rows that were fitted (the rows plot_layers draws)
_FITTED = ("", "over-trained", "under-trained", "fit-failed")

FIGSIZE = (6.4, 4.8)
DPI = 100
_MARKERS = {"dense": "o", "conv1d": "^", "conv2d": "s", "embedding": "D"}
_TITLES = {"loglog": "Log-Log ESD", "linlin": "Lin-Lin ESD", "loglin": "Log-Lin ESD"}
_UNSAFE = re.compile(r"[^0-9A-Za-z_.\-]+")

# ---------------------------------------------------------------------------------------------
# Helpers.


def layer_file_stem(name: str, layer_id: int | None = None, slice_id: int | None = None) -> str:
    """File name stem of a layer's figures: ``<layer_id>_<sanitized name>[_slice<k>]``.

    >>> layer_file_stem("encoder/layer.0/attn", 3)
    '3_encoder_layer.0_attn'
    """
    stem = _UNSAFE.sub("_", str(name)).strip("_") or "layer"
    if layer_id is not None:
        stem = f"{int(layer_id)}_{stem}"
    if slice_id is not None:
        stem = f"{stem}_slice{int(slice_id)}"
    return stem


def _axes(ax, figsize=FIGSIZE):
    """``(figure, axes)``: a new pyplot-free Figure, or the figure of the given axes."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _target(savefig, default_name: str) -> Path | None:
    """File to write: ``savefig`` itself, or ``default_name`` inside it when it is a folder."""
    if savefig is None or savefig is False:
        return None
    path = Path(savefig)
    if path.is_dir() or str(savefig).endswith(os.sep):
        path.mkdir(parents=True, exist_ok=True)
        return path / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(fig, savefig, default_name: str):
    path = _target(savefig, default_name)
    if path is not None:
        fig.savefig(path, dpi=DPI, format="png")
    return fig


def _values(evals) -> np.ndarray:
    """Finite eigenvalues as a flat float64 numpy array (NaN padding dropped)."""
    x = np.asarray(evals, dtype=np.float64).reshape(-1)
    return np.sort(x[np.isfinite(x)])


def _positive(x: np.ndarray) -> np.ndarray:
    """The eigenvalues log axes show: those the fit uses (> 1e-5), else all positive ones."""
    keep = x[x > EVALS_THRESH]
    return keep if keep.size else x[x > 0]


def _field(obj, name: str, default=math.nan) -> float:
    """``float(obj.name)`` for a fit NamedTuple or a details row; ``default`` if absent."""
    if obj is None:
        return default
    value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    if value is None:
        return default
    try:
        return float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        return default


def _n_bins(n: int, bins: int | None) -> int:
    if bins is not None:
        return int(bins)
    return int(np.clip(2.0 * math.sqrt(max(n, 1)), 10, 100))


@functools.cache
def _jitted(name: str):
    """``jax.jit`` of a :mod:`rmtkit.powerlaw` function (compiled once per bucket length)."""
    import jax

    from rmtkit import powerlaw

    return jax.jit(getattr(powerlaw, name))


def _bucketed(name: str, evals: np.ndarray):
    """``rmtkit.<name>(evals)`` computed on the spectrum padded to its bucket length (so a
    model's layers compile a handful of kernels, not one per size); same result."""
    from rmtkit.esd import pad_spectra

    padded, mask = pad_spectra([evals])
    return _jitted(name)(padded[0], mask[0])


def _pl_fit(evals, fit):
    """The given fit, or ``rmtkit.fit_pl(evals)`` when none was given."""
    if fit is not None:
        return fit
    return _bucketed("fit_pl", _values(evals))


def _pl_density(x: np.ndarray, alpha: float, xmin: float, share: float) -> np.ndarray:
    r"""Density of the fitted tail within the whole ESD: share · (α-1)/xmin · (x/xmin)^-α."""
    return share * (alpha - 1.0) / xmin * (x / xmin) ** (-alpha)


def _fit_summary(fit) -> tuple[float, float, float, float]:
    """``(alpha, xmin, D, n_tail)`` of a fit (NaN where absent)."""
    return (_field(fit, "alpha"), _field(fit, "xmin"), _field(fit, "D"),
            _field(fit, "num_pl_spikes"))


# ---------------------------------------------------------------------------------------------
# Per-layer plots.


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
    if scale not in SCALES:
        raise InvalidArgumentError(f"`scale` must be one of {SCALES}; got {scale!r}.")
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
        dens, edges, _ = ax.hist(data, bins=nb, density=True, color="C0", alpha=0.6,
                                 label="ESD")
        if ok:
            xs = np.linspace(xmin, max(data.max(), xmin * 1.01), 200)
            ax.plot(xs, _pl_density(xs, alpha, xmin, share), "-", color="C1", lw=2, label=label)
            ax.set_ylim(0, 1.1 * max(float(np.max(dens)), 1e-300))
    else:
        dens, edges, _ = ax.hist(data, bins=nb, density=True, color="C0", alpha=0.6,
                                 label="ESD")
        if ok:
            us = np.linspace(np.log10(xmin), max(data.max(), np.log10(xmin) + 1e-3), 200)
            xs = 10.0 ** us
            ax.plot(us, _pl_density(xs, alpha, xmin, share) * xs * math.log(10.0), "-",
                    color="C1", lw=2, label=label)
            ax.set_ylim(0, 1.1 * max(float(np.max(dens)), float(np.max(
                _pl_density(xs, alpha, xmin, share) * xs * math.log(10.0)))))
    if ok:
        pos = np.log10(xmin) if scale == "loglin" else xmin
        ax.axvline(pos, color="C3", ls="--", label=f"xmin = {xmin:.3g}")
    elif data.size:
        ax.plot([], [], " ", label=label)
    ax.set_xlabel("log10 eigenvalue" if scale == "loglin" else "eigenvalue λ")
    ax.set_ylabel("density")
    ax.set_title(_TITLES[scale] if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, savefig, f"esd_{scale}.png")


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
            ax2.set_ylim(max(0.0, float(finite.min()) - 0.5),
                         min(float(np.nanpercentile(finite, 95)) + 1.0, 20.0))
    handles = ax.get_lines() + ax2.get_lines()
    if np.isfinite(xmin):
        handles.append(ax.axvline(xmin, color="C3", ls="--",
                                  label=f"xmin = {xmin:.3g} (α = {alpha:.2f}, D = {ks:.3f})"))
    if not cx.size:
        ax.text(0.5, 0.5, "no admissible xmin", ha="center", transform=ax.transAxes)
    ax.legend(handles, [h.get_label() for h in handles], loc="upper center", fontsize="small")
    ax.set_title("PL fit for each xmin" if title is None else title)
    return _save(fig, savefig, "pl_candidates.png")


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
    *correlation trap* (SPEC §6): unusually large entries of W; the vertical line marks
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
        ax.hist(np.log10(x), bins=edges, density=True, color="C2", alpha=0.55,
                label="original")
    if r.size:
        ax.hist(np.log10(r), bins=edges, density=True, color="C3", alpha=0.45,
                label="randomized")
    if np.isfinite(max_rand_eval) and max_rand_eval > 0:
        ax.axvline(np.log10(max_rand_eval), color="C1", lw=2,
                   label=f"max rand eval = {max_rand_eval:.3g}")
    if x.size:
        ax.axvline(np.log10(x.max()), color="C2", ls=":", label=f"λmax = {x.max():.3g}")
    ax.set_xlabel("log10 eigenvalue")
    ax.set_ylabel("density")
    ax.set_title("Randomized ESD" if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, savefig, "randomized.png")


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
    from rmtkit.mp import mp_fit, mp_pdf

    x = _values(evals)
    if fit is None:
        fit = mp_fit(x, Q=Q, M=M, margin=margin)
    sigma = _field(fit, "sigma")
    scale = _field(fit, "W_scale")
    ok = np.isfinite(sigma) and np.isfinite(scale) and sigma > 0
    fig, ax = _axes(ax)
    if not ok:
        total = x.sum()
        t = x * (x.size / total) if total > 0 else x
        ax.hist(t, bins=_n_bins(t.size, bins), density=True, color="C0", alpha=0.6,
                label="ESD (rescaled)")
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
        ax.hist(shown, bins=nb, range=(0.0, upper),
                weights=np.full(shown.size, nb / (upper * max(t.size, 1))),
                color="C0", alpha=0.6, label="ESD (rescaled to mean 1)")
        grid = np.linspace(0.0, upper, 400)[1:]
        share = (t.size - n_spikes) / max(t.size, 1)
        pdf = share * np.asarray(mp_pdf(grid, Q=float(Q), sigma=sigma), dtype=np.float64)
        ax.plot(grid, pdf, color="C1", lw=2, label=f"MP fit: σ = {sigma:.3f}, Q = {Q:.3g}")
        ax.axvline(bulk_max, color="C2", ls="--", label=f"bulk edge λ+ = {bulk_max:.3g}")
        if np.isfinite(edge):
            ax.axvline(edge, color="C3", ls="-", label=f"spike edge ({n_spikes} spikes)")
        beyond = int(np.sum(t > upper))
        if beyond:
            ax.text(0.98, 0.6, f"{beyond} eigenvalue(s) beyond, max {t.max():.3g} →",
                    ha="right", transform=ax.transAxes, fontsize="small")
        ax.set_xlim(0.0, upper)
    ax.set_xlabel("eigenvalue / mean eigenvalue")
    ax.set_ylabel("density")
    ax.set_title("Marchenko–Pastur fit" if title is None else title)
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, savefig, "mp.png")


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
        figs[f"esd_{scale}"] = plot_esd(x, fit, scale=scale, bins=bins,
                                        title=f"{_TITLES[scale]} — {label}",
                                        savefig=target(f"esd_{scale}"))
    figs["pl_candidates"] = plot_pl_candidates(x, fit, title=f"PL fit for each xmin — {label}",
                                               savefig=target("pl_candidates"))
    if rand_evals is not None:
        figs["randomized"] = plot_randomized(x, rand_evals, max_rand_eval=max_rand_eval,
                                             bins=bins, title=f"Randomized ESD — {label}",
                                             savefig=target("randomized"))
    if Q is not None:
        figs["mp"] = plot_mp(x, Q=Q, fit=mp_fit, M=M, bins=bins,
                             title=f"MP fit — {label}", savefig=target("mp"))
    return figs


# ---------------------------------------------------------------------------------------------
# Model-level plots (details Datasets).


def _check_details(details, metric: str):
    import xarray as xr

    if not isinstance(details, xr.Dataset):
        raise InvalidArgumentError(
            f"`details` must be the xarray.Dataset of rmtkit.analyze, got "
            f"{type(details).__name__}; convert a DataFrame with xarray.Dataset.from_dataframe.")
    if "layer" not in details.dims:
        raise InvalidArgumentError(
            f"`details` must have a dim 'layer'; got dims {tuple(details.dims)}.")
    if metric not in details.data_vars:
        raise InvalidArgumentError(
            f"`details` has no variable {metric!r}; it has {sorted(details.data_vars)}.")


def _series(details, metric: str, over: Sequence[str] | None = None):
    """Yield ``(label, row_details)`` per entry of the dims of ``metric`` other than ``layer``.

    ``over`` restricts which dims are split into series; the remaining extra dims are stacked
    into the ``layer`` dim (pooled).
    """
    extra = [d for d in details[metric].dims if d != "layer"]
    split = extra if over is None else [d for d in extra if d in over]
    pooled = [d for d in extra if d not in split]
    for idx in itertools.product(*(range(details.sizes[d]) for d in split)):
        sub = details.isel(dict(zip(split, idx))) if split else details
        if pooled:
            sub = sub.stack(_pool=("layer", *pooled)).rename({"_pool": "layer"})
        parts = []
        for d, i in zip(split, idx):
            value = details[d].values[i] if d in details.coords else i
            parts.append(f"{value}" if d == "model" else f"{d} {value}")
        yield (", ".join(parts) or None), sub


def _layer_coord(sub, name: str, default):
    if name in sub.coords or name in sub.data_vars:
        values = np.asarray(sub[name].broadcast_like(sub["layer"]).values)
        return values.reshape(-1)
    return np.asarray(default)


def plot_correlation_flow(
    details,
    *,
    metric: str = "alpha",
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""The *correlation flow*: a layer metric (alpha) against ``layer_id``, marker by kind.

    Well-trained networks keep their layer alphas in the HT-SR band :math:`2 \le \alpha \le 6`
    (shaded) throughout the depth; a rising trend or layers above 6 show layers that learned
    little, below 2 over-fitted ones. One series (colour) per entry of every dim other than
    ``layer`` (``model``, ``epoch``, ...); with one series, colours mark the layer kinds.

    Parameters
    ----------
    details : xarray.Dataset
        :func:`rmtkit.analyze` output (dim ``layer``, coords ``layer_id``, ``kind``).
    metric : str, default "alpha"
        Any per-layer variable (e.g. "alpha_weighted", "log_spectral_norm").
    ax, title, savefig
        As in :func:`plot_esd` (default file name ``correlation_flow.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_details(details, metric)
    series = list(_series(details, metric))
    fig, ax = _axes(ax, figsize=(8.0, 4.8))
    many = len(series) > 10
    cmap = matplotlib.colormaps["viridis"]
    kinds_seen: dict[str, Any] = {}
    for k, (label, sub) in enumerate(series):
        y = np.asarray(sub[metric].values, dtype=np.float64).reshape(-1)
        x = _layer_coord(sub, "layer_id", np.arange(y.size)).astype(np.float64)
        kinds = _layer_coord(sub, "kind", np.full(y.size, "layer")).astype(str)
        keep = np.isfinite(y) & np.isfinite(x)
        order = np.argsort(x[keep], kind="stable")
        xs, ys, ks = x[keep][order], y[keep][order], kinds[keep][order]
        if len(series) == 1:
            color = None
        elif many:
            color = cmap(k / (len(series) - 1))
        else:
            color = f"C{k % 10}"
        ax.plot(xs, ys, "-", lw=0.8, color=color or "0.6", alpha=0.7,
                label=label if label and (not many or k in (0, len(series) - 1)) else None)
        for kind in dict.fromkeys(ks):
            sel = ks == kind
            kcolor = color
            if color is None:
                kcolor = kinds_seen.setdefault(kind, f"C{len(kinds_seen) % 10}")
            ax.scatter(xs[sel], ys[sel], marker=_MARKERS.get(kind, "o"), s=28,
                       color=kcolor, edgecolors="k", linewidths=0.3, zorder=3)
            kinds_seen.setdefault(kind, kcolor)
    for kind in kinds_seen:  # legend entries for the kinds (marker; colour with one series)
        color = kinds_seen[kind] if len(series) == 1 else "0.5"
        ax.scatter([], [], marker=_MARKERS.get(kind, "o"), color=color, edgecolors="k",
                   linewidths=0.3, label=kind)
    if metric == "alpha":
        ax.axhspan(ALPHA_LOW, ALPHA_HIGH, color="C2", alpha=0.08, zorder=0)
        ax.axhline(ALPHA_LOW, color="C3", ls="--", lw=1, label="α = 2 (over-trained below)")
        ax.axhline(ALPHA_HIGH, color="C1", ls="--", lw=1, label="α = 6 (under-trained above)")
    ax.set_xlabel("layer_id")
    ax.set_ylabel(metric)
    ax.set_title(f"Correlation flow: {metric} by layer" if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, savefig, "correlation_flow.png")


def plot_alpha_hist(
    details,
    *,
    metric: str = "alpha",
    bins: int | Sequence[float] | None = None,
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""Histograms of the layer alphas, one per entry of a ``model`` dim, on shared bins.

    The way WeightWatcher compares models: the better-trained model has more of its layers in
    :math:`2 \le \alpha \le 6` (shaded) and a smaller mean alpha. Without a ``model`` dim there
    is one histogram; other extra dims (``epoch``) are pooled into it.

    Parameters
    ----------
    details : xarray.Dataset
        :func:`rmtkit.analyze` output, optionally concatenated along ``model``.
    metric : str, default "alpha"
        The per-layer variable to histogram.
    bins : int or edges, optional
        Default: ``numpy``'s "auto" rule on all values, at most 40 bins.
    ax, title, savefig
        As in :func:`plot_esd` (default file name ``alpha_hist.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_details(details, metric)
    series = [(label, np.asarray(sub[metric].values, dtype=np.float64).reshape(-1))
              for label, sub in _series(details, metric, over=("model",))]
    series = [(label, v[np.isfinite(v)]) for label, v in series]
    everything = np.concatenate([v for _, v in series]) if series else np.zeros(0)
    fig, ax = _axes(ax)
    if everything.size:
        if bins is None:
            edges = np.histogram_bin_edges(everything, bins="auto")
            if edges.size > 41:
                edges = np.histogram_bin_edges(everything, bins=40)
        else:
            edges = np.histogram_bin_edges(everything, bins=bins)
        for k, (label, v) in enumerate(series):
            name = label or metric
            text = (f"{name} (mean {v.mean():.2f}, {v.size} layers)" if v.size
                    else f"{name} (no finite values)")
            ax.hist(v, bins=edges, color=f"C{k % 10}", alpha=0.45 if len(series) > 1 else 0.7,
                    label=text)
            ax.hist(v, bins=edges, color=f"C{k % 10}", histtype="step", lw=1.2)
    else:
        ax.text(0.5, 0.5, f"no finite {metric}", ha="center", transform=ax.transAxes)
    if metric == "alpha":
        ax.axvspan(ALPHA_LOW, ALPHA_HIGH, color="C2", alpha=0.08, zorder=0)
        ax.axvline(ALPHA_LOW, color="C3", ls="--", lw=1)
        ax.axvline(ALPHA_HIGH, color="C1", ls="--", lw=1)
    ax.set_xlabel(metric)
    ax.set_ylabel("number of layers")
    ax.set_title(f"Layer {metric} histogram" if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, savefig, "alpha_hist.png" if metric == "alpha" else f"{metric}_hist.png")


def plot_model(details, savefig=None, *, weights=None, metric: str = "alpha",
               **layer_kw) -> dict[str, Any]:
    """The model-level figures of an analysis, and optionally every layer's panels.

    Parameters
    ----------
    details : xarray.Dataset
        :func:`rmtkit.analyze` output (optionally with a ``model`` dim).
    savefig : folder, optional
        Writes ``correlation_flow.png`` and ``alpha_hist.png`` (and the layer files) into it.
    weights : model, path or collection, optional
        When given, also :func:`plot_layers` ``(weights, details, savefig=savefig,
        **layer_kw)``, under the key ``"layers"``.
    metric : str, default "alpha"
        Variable of the model-level figures.

    Returns
    -------
    dict
        ``{"correlation_flow": Figure, "alpha_hist": Figure[, "layers": ...]}``.
    """
    folder = None
    if savefig is not None:
        folder = Path(savefig)
        folder.mkdir(parents=True, exist_ok=True)
    hist_name = "alpha_hist.png" if metric == "alpha" else f"{metric}_hist.png"
    out: dict[str, Any] = {
        "correlation_flow": plot_correlation_flow(
            details, metric=metric,
            savefig=None if folder is None else folder / "correlation_flow.png"),
        "alpha_hist": plot_alpha_hist(
            details, metric=metric, savefig=None if folder is None else folder / hist_name),
    }
    if weights is not None:
        out["layers"] = plot_layers(weights, details, savefig=savefig, **layer_kw)
    return out


# ---------------------------------------------------------------------------------------------
# Every layer of a model.


def _rows(details) -> Iterable[tuple[str, int | None, int | None, Any]]:
    """``(name, layer_id, slice_id, row)`` for each entry of the ``layer`` dim."""
    extra = [d for d in details.dims if d != "layer" and d in details["alpha"].dims] \
        if "alpha" in details.data_vars else []
    if extra:
        raise InvalidArgumentError(
            f"`details` for plot_layers must describe one model (dim 'layer' only); it also "
            f"has {extra}: select one entry first, e.g. details.isel({extra[0]}=0).")
    if "name" not in details.coords and "name" not in details.data_vars:
        raise InvalidArgumentError("`details` has no `name` coordinate to match layers by.")
    names = np.asarray(details["name"].values).astype(str)
    ids = details["layer_id"].values if "layer_id" in details.coords else [None] * names.size
    slices = details["slice_id"].values if "slice_id" in details.coords else [None] * names.size
    for i, name in enumerate(names):
        sid = slices[i]
        sid = None if sid is None or (isinstance(sid, float) and np.isnan(sid)) or int(sid) < 0 \
            else int(sid)
        lid = None if ids[i] is None else int(ids[i])
        yield str(name), lid, sid, details.isel(layer=i)


def _layer_esd(values: np.ndarray, pool: bool) -> np.ndarray:
    """Spectrum of one layer with the conventions of :func:`rmtkit.esd`: the host LAPACK
    route (float64, no compilation) for finite weights, the JAX one otherwise."""
    from rmtkit._host import host_esd
    from rmtkit.esd import esd

    if np.all(np.isfinite(values)):
        return np.asarray(host_esd(values, pool=pool))
    return np.asarray(esd(values, pool=pool))


def _randomized_esd(values: np.ndarray, key, layer_id: int | None,
                    slice_id: int | None) -> np.ndarray:
    r"""The randomized spectrum :func:`rmtkit.analyze` computes for ``randomize=True`` (its
    first draw, same keys and units: ``rmtkit.analysis._randomization_unit``), so the plot
    shows the draw the analysis measured."""
    import jax

    from rmtkit._host import randomized_spectra
    from rmtkit.analysis import _randomization_unit

    layer_key = jax.random.fold_in(key, 0 if layer_id is None else layer_id)
    w, k = _randomization_unit(values, layer_key, slice_id)
    return randomized_spectra(w, k, replicas=1)[0]


def _has(row, name: str) -> bool:
    return row is not None and name in row.data_vars


def plot_layers(
    weights,
    details=None,
    *,
    savefig=None,
    layers: Sequence[str] | None = None,
    min_evals: int = 50,
    pool: bool | None = None,
    randomize: bool | None = None,
    mp_fit: bool | None = None,
    key=None,
    bins: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The per-layer panels (:func:`plot_layer`) of every analyzed layer of a model.

    Spectra are computed here with :func:`rmtkit.esd`, pooled as in SPEC §1: one pooled ESD
    per convolution layer (``pool=True``), or one per kernel slice (``pool=False``, files get
    ``_slice<k>``). With ``details`` the layers (and slices) are its fitted rows (``warning``
    "", "over-trained", "under-trained" or "fit-failed"; rows with too few eigenvalues or bad
    weights are skipped) and their fits are its values (alpha, xmin, D, tail size,
    max_rand_eval), so the plots show what the table says; a row whose ``lambda_max`` does not
    match the spectrum computed here (another normalisation) is refitted with
    :func:`rmtkit.fit_pl`.

    Parameters
    ----------
    weights : model object, path or collection
        Anything :func:`rmtkit.load` reads.
    details : xarray.Dataset, optional
        :func:`rmtkit.analyze` output of the same model (one model: dim ``layer``).
        Default: every layer with at least ``min_evals`` eigenvalues, fitted here.
    savefig : folder, optional
        Write the PNGs there (names in the module docstring) and return their paths instead
        of the figures, so a large model does not hold hundreds of figures in memory.
    layers : sequence of str, optional
        Only these layer names.
    min_evals : int, default 50
        Without ``details``: skip spectra with fewer eigenvalues.
    pool : bool, optional
        Default: False when ``details`` has a ``slice_id`` coordinate, else True.
    randomize, mp_fit : bool, optional
        Draw the randomized / MP panels. Default: as analyzed (``details`` has
        ``max_rand_eval`` / ``sigma_mp``); without ``details``, False.
    key : jax.random key or int, optional
        Randomization key as in :func:`rmtkit.analyze` (default ``jax.random.key(0)``):
        with the same key, the randomized ESD drawn is the one the analysis measured (its
        first replica).
    bins : int, optional
        Bins of the histograms.

    Returns
    -------
    dict
        File stem (:func:`layer_file_stem`) -> {panel: Figure}, or {panel: Path} with
        ``savefig``.
    """
    import jax

    from rmtkit._load import load
    from rmtkit.collection import iter_layers
    from rmtkit.esd import oriented_shape, receptive_field
    from rmtkit.mp import mp_fit as fit_mp

    collection = load(weights)
    by_name = dict(iter_layers(collection))
    first = None if details is None else next(iter(_rows(details)), (None,) * 4)[3]
    if pool is None:
        pool = not (details is not None and "slice_id" in details.coords)
    if randomize is None:
        randomize = _has(first, "max_rand_eval")
    if mp_fit is None:
        mp_fit = _has(first, "sigma_mp")
    if key is None or isinstance(key, (int, np.integer)):
        key = jax.random.key(0 if key is None else int(key))

    if details is not None:
        rows = list(_rows(details))
        missing = sorted({name for name, *_ in rows} - set(by_name))
        if missing:
            raise InvalidArgumentError(
                f"layers {missing[:5]} of `details` are not in the weights (layers there: "
                f"{list(by_name)[:5]}...); plot the model that was analyzed.")
    else:
        rows = []
        for name, w in by_name.items():
            lid = int(w.attrs.get("layer_id", len(rows)))
            rf = receptive_field(w.shape)
            if pool or rf == 1:
                rows.append((name, lid, None, None))
            else:
                rows.extend((name, lid, s, None) for s in range(rf))
    if layers is not None:
        wanted = set(layers)
        rows = [r for r in rows if r[0] in wanted]

    folder = None if savefig is None else Path(savefig)
    out: dict[str, dict[str, Any]] = {}
    cache: dict[str, tuple] = {}
    for name, lid, sid, row in rows:
        w = by_name[name]
        if name not in cache:
            values = np.asarray(w.values)
            cache = {name: (values, _layer_esd(values, pool))}  # one layer in memory at a time
        values, spectra = cache[name]
        shape = values.shape
        evals = spectra if spectra.ndim == 1 else spectra[0 if sid is None else sid]
        revals = _randomized_esd(values, key, lid, sid) if randomize else None
        if row is None and np.sum(np.isfinite(evals)) < min_evals:
            continue
        warning = str(row["warning"].values) if _has(row, "warning") else ""
        if warning not in _FITTED:
            continue  # a row the analysis did not fit (too few eigenvalues, bad weights, ...)
        fit = None
        if row is not None:
            lam = _field(row, "lambda_max")
            top = float(np.max(evals))
            if not np.isfinite(lam) or abs(lam - top) <= 1e-3 * max(abs(top), 1e-30):
                fit = row  # the table's own fit (NaN alpha: drawn as a failed fit)
        if fit is None:
            fit = _pl_fit(evals, None)
        n_rows, n_cols = oriented_shape(shape)
        Q = n_rows / n_cols
        mfit = fit_mp(evals, Q=Q, M=n_cols) if mp_fit else None
        max_rand = _field(row, "max_rand_eval") if randomize else None
        figs = plot_layer(
            evals, fit, rand_evals=revals, max_rand_eval=max_rand,
            Q=Q if mp_fit else None, mp_fit=mfit, M=n_cols, name=name, layer_id=lid,
            slice_id=sid, bins=bins, savefig=folder)
        stem = layer_file_stem(name, lid, sid)
        if folder is not None:
            out[stem] = {panel: folder / f"{stem}_{panel}.png" for panel in figs}
        else:
            out[stem] = figs
    return out
