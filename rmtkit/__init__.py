"""rmtkit: Heavy-Tailed Self-Regularization diagnostics of neural networks from weights alone.

The math layer is pure JAX on arrays (jit-, vmap- and grad-able, NamedTuple results):

- :func:`esd` — eigenvalues of :math:`W^T W` per layer (SPEC §1);
- :func:`fit_pl` — the power-law fit of the spectrum's tail, alpha (SPEC §2);
- :func:`spectral_metrics` and the single metrics (SPEC §4).

Importing rmtkit imports no deep-learning framework and no plotting library.
"""

from rmtkit import errors
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
from rmtkit.powerlaw import PowerLawCandidates, PowerLawFit, fit_pl, pl_candidates

__version__ = "0.1.0"

#: names of the labeled layer (xarray), imported on first use so that the math stays light
_LAZY = {
    "load": "rmtkit._load",
    "data_path": "rmtkit._data",
    "from_layers": "rmtkit.collection",
    "iter_layers": "rmtkit.collection",
    "validate_collection": "rmtkit.collection",
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
    "plot_model",
    "plot_alpha_hist",
    "plot_correlation_flow",
    "plot_layers",
    "plot_layer",
    "plot_mp",
    "plot_randomized",
    "plot_pl_candidates",
    "plot_esd",
    "MonitorFlags",
    "Monitor",
    "validate_collection",
    "iter_layers",
    "from_layers",
    "data_path",
    "load",
    "PowerLawCandidates",
    "PowerLawFit",
    "SpectralMetrics",
    "alpha_warning",
    "alpha_weighted",
    "bucket_length",
    "entropy",
    "errors",
    "esd",
    "fit_pl",
    "lambda_max",
    "log_alpha_norm",
    "log_norm",
    "log_spectral_norm",
    "matrix_rank",
    "norm",
    "pad_spectra",
    "pl_candidates",
    "slices",
    "spectral_metrics",
    "stable_rank",
    "weak_rank_loss",
]
