"""rmtkit: Heavy-Tailed Self-Regularization diagnostics of neural networks from weights alone.

The math layer is pure JAX on arrays (jit-, vmap- and grad-able, NamedTuple results):

- :func:`esd` — eigenvalues of :math:`W^T W` per layer (SPEC §1);
- :func:`fit_pl` — the power-law fit of the spectrum's tail, alpha (SPEC §2);
- :func:`spectral_metrics` and the single metrics (SPEC §4);
- :func:`mp_fit`, :func:`correlation_traps`, :func:`fit_tpl`, :func:`svd_sharpen` … (SPEC §3-§8).

The labeled layer (xarray; imported on first use): :func:`load` a model into a weight
collection, :func:`analyze` / :func:`describe` / :func:`summary` it, :func:`sharpen` it,
:mod:`rmtkit.plot` it, or use the familiar :class:`WeightWatcher` facade.

Importing rmtkit imports no deep-learning framework and no plotting library.
"""

from rmtkit import errors
from rmtkit.distance import distances
from rmtkit.esd import bucket_length, esd, pad_spectra, slices
from rmtkit.metrics import (
    SpectralMetrics,
    alpha_warning,
    alpha_weighted,
    entropy,
    lambda_max,
    log_alpha_norm,
    log_norm,
    log_spectral_norm,
    matrix_rank,
    norm,
    spectral_metrics,
    stable_rank,
    weak_rank_loss,
)
from rmtkit.mp import MPFit, mp_cdf, mp_fit, mp_pdf, mp_quantile
from rmtkit.powerlaw import PowerLawCandidates, PowerLawFit, fit_pl, pl_candidates
from rmtkit.svd import DetX, detx, svd_sharpen, svd_smooth
from rmtkit.tpl import TPLFit, fit_tpl
from rmtkit.traps import TrapStats, correlation_traps, rand_distance, randomize

__version__ = "0.1.0"

#: names of the labeled layer (xarray), imported on first use so that the math stays light
_LAZY = {
    "load": "rmtkit._load",
    "data_path": "rmtkit._data",
    "from_layers": "rmtkit.collection",
    "iter_layers": "rmtkit.collection",
    "validate_collection": "rmtkit.collection",
    "analyze": "rmtkit.analysis",
    "describe": "rmtkit.analysis",
    "summary": "rmtkit.analysis",
    "spectra": "rmtkit.analysis",
    "analyze_many": "rmtkit.analysis",
    "concat": "rmtkit.analysis",
    "model_distances": "rmtkit.analysis",
    "select_layers": "rmtkit.analysis",
    "sharpen": "rmtkit.transform",
    "smooth": "rmtkit.transform",
    "WeightWatcher": "rmtkit.facade",
    "delta_collection": "rmtkit.finetune",
    "lora_collection": "rmtkit.finetune",
    "Monitor": "rmtkit.monitor",
    "MonitorFlags": "rmtkit.monitor",
    "plot_esd": "rmtkit.plot",
    "plot_pl_candidates": "rmtkit.plot",
    "plot_randomized": "rmtkit.plot",
    "plot_mp": "rmtkit.plot",
    "plot_layer": "rmtkit.plot",
    "plot_layers": "rmtkit.plot",
    "plot_correlation_flow": "rmtkit.plot",
    "plot_alpha_hist": "rmtkit.plot",
    "plot_model": "rmtkit.plot",
}
#: submodules reachable as attributes without an explicit import
_LAZY_MODULES = ("plot", "monitor", "collection", "adapters", "testing")


def __getattr__(name: str):
    """Import the xarray-based names of :data:`_LAZY` on first access (PEP 562)."""
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"rmtkit.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rmtkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))

__all__ = [
    "alpha_warning",
    "alpha_weighted",
    "analyze",
    "analyze_many",
    "bucket_length",
    "concat",
    "correlation_traps",
    "data_path",
    "delta_collection",
    "describe",
    "DetX",
    "detx",
    "distances",
    "entropy",
    "errors",
    "esd",
    "fit_pl",
    "fit_tpl",
    "from_layers",
    "iter_layers",
    "lambda_max",
    "load",
    "log_alpha_norm",
    "log_norm",
    "log_spectral_norm",
    "lora_collection",
    "matrix_rank",
    "model_distances",
    "Monitor",
    "MonitorFlags",
    "mp_cdf",
    "mp_fit",
    "mp_pdf",
    "mp_quantile",
    "MPFit",
    "norm",
    "pad_spectra",
    "pl_candidates",
    "plot_alpha_hist",
    "plot_correlation_flow",
    "plot_esd",
    "plot_layer",
    "plot_layers",
    "plot_model",
    "plot_mp",
    "plot_pl_candidates",
    "plot_randomized",
    "PowerLawCandidates",
    "PowerLawFit",
    "rand_distance",
    "randomize",
    "select_layers",
    "sharpen",
    "slices",
    "smooth",
    "spectra",
    "spectral_metrics",
    "SpectralMetrics",
    "stable_rank",
    "summary",
    "svd_sharpen",
    "svd_smooth",
    "TPLFit",
    "TrapStats",
    "validate_collection",
    "weak_rank_loss",
    "WeightWatcher",
]
