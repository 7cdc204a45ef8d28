"""The style the plots share (figure size, resolution, markers, the alpha band), their file
names and saving, and reading a fit from a NamedTuple or a details row."""

import functools
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

try:
    import matplotlib  # noqa: F401 -- the error below names the extra
    from matplotlib.figure import Figure
except ModuleNotFoundError as err:  # pragma: no cover - exercised only without matplotlib
    raise ModuleNotFoundError("rmtkit.plot needs matplotlib: pip install 'rmtkit[plot]'") from err

import rmtkit
from rmtkit.core.metrics import ALPHA_OVER_TRAINED, ALPHA_UNDER_TRAINED
from rmtkit.core.powerlaw import EVALS_THRESH

#: per-layer panels, in the order :func:`plot_layer` draws them (file name suffixes)
PANELS = (
    "esd_loglog",
    "esd_linlin",
    "esd_loglin",
    "pl_candidates",
    "randomized",
    "mp",
)
#: the panels of the optional analyses (detX, level spacing, eigenvectors), drawn after
#: :data:`PANELS` when their data are given (file name suffixes)
ANALYSIS_PANELS = (
    "detx",
    "level_spacing",
    "deltas",
    "vector_histograms",
    "vector_metrics",
)
#: the axes of :func:`rmtkit.plot.plot_esd`
SCALES = ("loglog", "linlin", "loglin")
#: lower end of the HT-SR range of a well-trained layer (docs/math.md §4), drawn as a band
ALPHA_LOW = ALPHA_OVER_TRAINED
#: upper end of that range
ALPHA_HIGH = ALPHA_UNDER_TRAINED


#: size of every per-layer figure (inches)
FIGSIZE = (6.4, 4.8)
#: resolution of every figure (dots per inch)
DPI = 100
_MARKERS = {"dense": "o", "conv1d": "^", "conv2d": "s", "embedding": "D"}
_TITLES = {"loglog": "Log-Log ESD", "linlin": "Lin-Lin ESD", "loglin": "Log-Lin ESD"}
_UNSAFE = re.compile(r"[^0-9A-Za-z_.\-]+")


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


def save_figure(fig, savefig, default_name: str):
    """Write ``fig`` as PNG to ``savefig`` (a file, or a folder: ``default_name`` inside it;
    None: nothing); return ``fig``."""
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
    """``jax.jit`` of a public power-law function of rmtkit (compiled once per bucket length)."""
    import jax

    return jax.jit(getattr(rmtkit, name))


def _bucketed(name: str, evals: np.ndarray):
    """``rmtkit.<name>(evals)`` computed on the spectrum padded to its bucket length (so a
    model's layers compile a handful of kernels, not one per size); same result."""
    padded, mask = rmtkit.pad_spectra([evals])
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
    return (
        _field(fit, "alpha"),
        _field(fit, "xmin"),
        _field(fit, "D"),
        _field(fit, "num_pl_spikes"),
    )
