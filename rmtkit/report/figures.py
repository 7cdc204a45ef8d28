"""The report's figures, drawn by :mod:`rmtkit.plot` and written as inline SVG.

- a model: the correlation flow (alpha by layer, marker and colour by kind, the [2, 6] band)
  and the alpha histogram;
- a series of models: every model's layer alphas on one correlation-flow plot, their alpha
  histograms on shared bins, and each summary metric along the series;
- a layer: the log-log ESD with the table's power-law fit and xmin, D(xmin) over the candidate
  xmin, and, when the analysis computed them, the randomized ESD over the original
  (correlation traps) and the Marchenko-Pastur fit of the bulk.

A figure that cannot be drawn (no finite alpha, no spectrum) is not drawn: the page says why
(:class:`Drawn` with ``svg=""`` and a ``note``).
"""

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

import rmtkit
from rmtkit import plot
from rmtkit.report.svg import RC, StyleTable, figure_svg

__all__ = [
    "Drawn",
    "Renderer",
    "layer_panels",
    "model_figures",
    "row_key",
    "series_figures",
    "spectra_index",
]

#: size of one layer panel (inches, at 100 dpi)
PANEL_SIZE = (4.0, 3.0)
#: size of a model-level figure (inches)
WIDE_SIZE = (7.0, 3.4)
#: relative difference of the table's ``lambda_max`` and the spectrum's largest eigenvalue
#: above which the spectrum is not the one the table's row was fitted on (plot_layers' rule)
LAMBDA_MAX_RTOL = 1e-3


class Drawn(NamedTuple):
    """One figure of the page: ``key`` (stable id), ``caption``, its inline ``svg`` ("" when
    it could not be drawn) and a ``note`` saying why, or what to keep in mind."""

    key: str
    caption: str
    svg: str
    note: str = ""


class Renderer:
    """Turns matplotlib Figures into inline SVG for one page: page-unique ids, one style table."""

    def __init__(self):
        self.styles = StyleTable()
        self._count = 0

    def svg(self, fig: Figure, label: str) -> str:
        """``fig`` as compact inline SVG (:func:`rmtkit.report.svg.figure_svg`), its log axes
        labelled with plain text (:func:`plain_log_ticks`)."""
        self._count += 1
        for ax in fig.axes:
            plain_log_ticks(ax)
        return figure_svg(fig, self.styles, f"f{self._count}-", label=label)

    def drawn(self, key: str, caption: str, fig: Figure, note: str = "") -> Drawn:
        return Drawn(key, caption, self.svg(fig, caption), note)


#: margins of a figure (fractions of its size) with room for the tick labels, axis labels and
#: title at the report's font size; fixed margins draw twice as fast as a layout engine
MARGINS = {"left": 0.15, "right": 0.96, "bottom": 0.15, "top": 0.9}
#: the same with room for a second y axis on the right (D(xmin) and alpha)
TWIN_MARGINS = {**MARGINS, "right": 0.86}
#: margins of the model-level figures (wider, the same room in inches)
WIDE_MARGINS = {"left": 0.09, "right": 0.98, "bottom": 0.14, "top": 0.9}


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(value: float, _pos=None) -> str:
    """A log-axis tick label as plain text: ``10⁻³`` for a power of ten, else ``%g``.

    >>> decade_label(0.001), decade_label(100.0), decade_label(2.5)
    ('10⁻³', '10²', '2.5')
    """
    if value > 0:
        k = round(math.log10(value))
        if math.isclose(value, 10.0**k, rel_tol=1e-9):
            return "10" + str(k).translate(_SUPERSCRIPT)
    return f"{value:g}"


def plain_log_ticks(ax) -> None:
    """Label the log axes of ``ax`` with :func:`decade_label` (major ticks only) instead of
    matplotlib's mathtext (``$10^{-3}$``), which takes half of a panel's drawing time and
    draws the same thing."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(decade_label))
            axis.set_minor_formatter(NullFormatter())


def new_figure(size: tuple[float, float] = PANEL_SIZE, margins=MARGINS):
    """A pyplot-free Figure with one axes and fixed ``margins``."""
    fig = Figure(figsize=size, dpi=100)
    fig.subplots_adjust(**margins)
    return fig, fig.add_subplot()


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return values[np.isfinite(values)]


def _n_finite(details, name: str) -> int:
    if name not in details.data_vars:
        return 0
    return int(np.isfinite(np.asarray(details[name].values, dtype=np.float64)).sum())


# ---------------------------------------------------------------------------------------------
# A model and a series of models.


def model_figures(details, render: Renderer) -> list[Drawn]:
    """The correlation flow and the alpha histogram of one model's ``details``."""
    if _n_finite(details, "alpha") == 0:
        note = "no layer has a finite alpha, so there is no correlation flow or histogram"
        return [Drawn("flow", "Correlation flow", "", note)]
    with mpl.rc_context(RC):
        fig, ax = new_figure(WIDE_SIZE, WIDE_MARGINS)
        plot.plot_correlation_flow(details, ax=ax)
        flow = render.drawn(
            "flow",
            "Correlation flow: alpha of each layer by depth, [2, 6] shaded",
            fig,
        )
        fig, ax = new_figure(WIDE_SIZE, WIDE_MARGINS)
        plot.plot_alpha_hist(details, ax=ax)
        hist = render.drawn("hist", "Histogram of the layer alphas", fig)
    return [flow, hist]


def series_figures(stacked, summaries: dict[str, dict[str, float]], render: Renderer, *, dim):
    """The figures of several models: layer alphas of every model on one correlation flow, the
    alpha histograms, and each summary metric along the series (models in the given order).

    ``stacked`` is :func:`rmtkit.concat` of the models along ``"model"``; ``summaries`` maps a
    model to its :func:`rmtkit.summary` means; ``dim`` names the series in the labels.
    """
    out = []
    with mpl.rc_context(RC):
        if _n_finite(stacked, "alpha"):
            fig, ax = new_figure((WIDE_SIZE[0], WIDE_SIZE[1] + 0.6), WIDE_MARGINS)
            plot.plot_correlation_flow(stacked, ax=ax, title=f"alpha by layer, one line per {dim}")
            out.append(render.drawn("series_flow", f"Layer alphas of every {dim}", fig))
            fig, ax = new_figure(WIDE_SIZE, WIDE_MARGINS)
            plot.plot_alpha_hist(stacked, ax=ax)
            out.append(render.drawn("series_hist", f"Alpha histogram of each {dim}", fig))
        else:
            out.append(Drawn("series_flow", "Layer alphas", "", "no model has a finite alpha"))
        metrics = [m for m in _metrics(summaries) if _any_finite(summaries, m)]
        if metrics:
            fig = _summary_trend(summaries, metrics, dim)
            out.append(render.drawn("series_trend", f"Summary metrics along the {dim}s", fig))
    return out


def _metrics(summaries: dict[str, dict[str, float]]) -> list[str]:
    return list(dict.fromkeys(m for s in summaries.values() for m in s))


def _any_finite(summaries, metric: str) -> bool:
    return any(math.isfinite(s.get(metric, math.nan)) for s in summaries.values())


def _summary_trend(summaries: dict[str, dict[str, float]], metrics: Sequence[str], dim: str):
    """One small panel per summary metric: its value for each model, in the series' order."""
    names = list(summaries)
    cols = min(len(metrics), 4)
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.2 * rows + 0.3), dpi=100, layout="constrained")  # once
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(-1)
    x = np.arange(len(names))
    for ax, metric in zip(axes, metrics, strict=False):
        y = np.array([summaries[n].get(metric, math.nan) for n in names], dtype=np.float64)
        ax.plot(x, y, "o-", color="C0", ms=4)
        if metric == "alpha":
            ax.axhspan(plot.ALPHA_LOW, plot.ALPHA_HIGH, color="C2", alpha=0.08)
        ax.set_title(f"mean {metric}")
        step = max(1, len(names) // 6)
        ax.set_xticks(x[::step], [_short(n) for n in names[::step]], rotation=30, ha="right")
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"summary means along the {dim}s (left to right: the order given)")
    return fig


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# A layer.


def spectra_index(spectra) -> dict[tuple[str, int | None], int]:
    """Row of ``spectra`` (:func:`rmtkit.spectra`) for each ``(name, slice_id)`` key."""
    names = np.asarray(spectra["name"].values).astype(str)
    if "slice_id" in spectra.coords:
        slices = [int(s) for s in np.asarray(spectra["slice_id"].values)]
    else:
        slices = [None] * names.size
    return {(str(n), s): i for i, (n, s) in enumerate(zip(names, slices, strict=True))}


def row_key(details, i: int) -> tuple[str, int | None]:
    """The ``(name, slice_id)`` key of row ``i`` of ``details`` (see :func:`spectra_index`)."""
    name = str(np.asarray(details["name"].values)[i])
    if "slice_id" in details.coords:
        return name, int(np.asarray(details["slice_id"].values)[i])
    return name, None


@functools.cache
def _mp_fit_kernel():
    """``rmtkit.mp_fit`` under ``jax.jit``: one compile per bucket length, not per layer."""
    import jax

    return jax.jit(rmtkit.mp_fit, static_argnames=("margin",))


def mp_fit_bucketed(evals: np.ndarray, q: float, m: int):
    """``rmtkit.mp_fit(evals, Q=q, M=m)`` on the spectrum padded to its bucket (same fit)."""
    padded, mask = rmtkit.pad_spectra([evals])
    return _mp_fit_kernel()(padded[0], mask[0], Q=float(q), M=int(m))


def _value(row, name: str) -> float:
    if name not in row.data_vars and name not in row.coords:
        return math.nan
    try:
        return float(np.asarray(row[name].values).reshape(()))
    except (TypeError, ValueError):
        return math.nan


def layer_panels(
    evals: np.ndarray,
    row,
    render: Renderer,
    *,
    rand_evals: np.ndarray | None = None,
    mp: bool = False,
) -> list[Drawn]:
    """The panels of one fitted layer, from its spectrum ``evals`` and its ``row`` of the table.

    The log-log ESD with the row's power-law fit and D(xmin) over the candidate xmin; the
    randomized overlay when ``rand_evals`` is given; the MP fit when ``mp`` (from the row's
    ``Q`` and ``M``). When the row's ``lambda_max`` is not the spectrum's largest eigenvalue
    (weights other than the analyzed ones), the fit drawn is refitted here and a note says so.
    """
    evals = _finite(evals)
    if evals.size == 0:
        return [Drawn("esd", "ESD", "", "no finite eigenvalue in this layer's spectrum")]
    fit, note = row, ""
    lam = _value(row, "lambda_max")
    top = float(evals.max())
    if math.isfinite(lam) and abs(lam - top) > LAMBDA_MAX_RTOL * max(abs(top), 1e-300):
        fit = None
        note = (
            f"λmax of the spectrum drawn ({top:.4g}) is not the table's ({lam:.4g}): the "
            "weights given are not the ones analyzed, so the fit drawn is refitted here"
        )
    out: list[Drawn] = []
    with mpl.rc_context(RC):
        fig, ax = new_figure()
        plot.plot_esd(evals, fit, ax=ax, title="log-log ESD and power-law fit")
        out.append(render.drawn("esd", "log-log ESD with the power-law fit", fig, note))
        fig, ax = new_figure(margins=TWIN_MARGINS)
        plot.plot_pl_candidates(evals, fit, ax=ax, title="D(xmin): KS distance per xmin")
        out.append(render.drawn("dxmin", "D(xmin) and alpha(xmin) of each candidate xmin", fig))
        if rand_evals is not None and _finite(rand_evals).size:
            fig, ax = new_figure()
            plot.plot_randomized(
                evals,
                _finite(rand_evals),
                max_rand_eval=_value(row, "max_rand_eval"),
                ax=ax,
                title="randomized ESD over the original",
            )
            out.append(render.drawn("randomized", "ESD of the randomized layer", fig))
        q, m = _value(row, "Q"), _value(row, "M")
        if mp and math.isfinite(q) and math.isfinite(m) and q > 0 and m > 0:
            fig, ax = new_figure()
            mfit = mp_fit_bucketed(evals, q, int(m))
            plot.plot_mp(evals, Q=q, fit=mfit, M=int(m), ax=ax, title="Marchenko-Pastur fit")
            out.append(render.drawn("mp", "Marchenko-Pastur fit of the bulk", fig))
    return out
