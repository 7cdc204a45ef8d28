"""rmtkit: Heavy-Tailed Self-Regularization diagnostics of neural networks from weights alone.

The math layer is pure JAX on arrays (jit-, vmap- and grad-able, NamedTuple results):

- :func:`esd` — eigenvalues of :math:`W^T W` per layer (docs/math.md §1);
- :func:`fit_pl` — the power-law fit of the spectrum's tail, alpha (§2);
- :func:`spectral_metrics` and the single metrics (§4);
- :func:`mp_fit`, :func:`correlation_traps`, :func:`fit_tpl`, :func:`svd_sharpen` … (§3-§8);
- :func:`pl_pvalue`, :func:`pl_compare` — is the tail a power law at all? (§12).

The labeled layer (xarray; imported on first use): :func:`load` a model into a weight
collection, :func:`analyze` / :func:`describe` / :func:`summary` it, :func:`sharpen` it,
:mod:`rmtkit.plot` it, :func:`report` it as one HTML page, or use the familiar
:class:`WeightWatcher` facade.

Importing rmtkit imports no deep-learning framework and no plotting library.

Where the code lives (each folder's ``__init__`` docstring states its import rule, and
``tests/project/test_import_rules.py`` enforces it; data flows down this list, never up):

==========================  ===================================================================
``rmtkit/errors.py``        the shared vocabulary: exceptions and row warnings (stdlib only)
``rmtkit/core/``            pure JAX math on arrays: spectra, fits, metrics (no xarray)
``rmtkit/_engine/``         execution: host / device spectra, bucket kernels, threads, dask
``rmtkit/collection/``      the labeled weight collection (xarray): data model, loading, deltas
``rmtkit/adapters/``        framework files and objects -> collection (folder ``adapters/``)
``rmtkit/analysis/``        the labeled layer: select, rows, analyze, compare, transform
``rmtkit/plot/``            figures from arrays and Datasets (public API only)
``rmtkit/report/``          the HTML report, an application on the public API
``rmtkit/{cli,monitor,facade}.py``  applications on the public API only
``rmtkit/testing/``         hypothesis strategies and builders with known spectra
==========================  ===================================================================
"""

from rmtkit import errors
from rmtkit.core.conv_fft import conv2d_fft_esd, conv2d_fft_svals
from rmtkit.core.crosslayer import intra_matrix, stacked_matrix
from rmtkit.core.distance import distances
from rmtkit.core.esd import bucket_length, esd, pad_spectra, slices
from rmtkit.core.gof import PowerLawComparison, PowerLawPValue, pl_compare, pl_pvalue, tail_ccdf
from rmtkit.core.metrics import (
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
from rmtkit.core.mp import MPFit, mp_cdf, mp_fit, mp_pdf, mp_quantile
from rmtkit.core.powerlaw import PowerLawCandidates, PowerLawFit, fit_pl, pl_candidates
from rmtkit.core.spacing import LevelSpacing, level_spacing, spacing_ratios, unfolded_spacings
from rmtkit.core.svd import DetX, detx, svd_sharpen, svd_smooth
from rmtkit.core.tpl import TPLFit, fit_tpl
from rmtkit.core.traps import TrapStats, correlation_traps, rand_distance, randomize
from rmtkit.core.vectors import (
    BulkTail,
    VectorMetrics,
    bulk_tail,
    eigenvector_metrics,
    localization_ratio,
    participation_ratio,
    vector_entropy,
)
from rmtkit.errors import RowWarning

#: names of the labeled layer (xarray), imported on first use so that the math stays light
_LAZY = {
    "load": "rmtkit.collection.load",
    "data_path": "rmtkit.collection.data",
    "from_layers": "rmtkit.collection.tree",
    "iter_layers": "rmtkit.collection.tree",
    "validate_collection": "rmtkit.collection.tree",
    "delta_collection": "rmtkit.collection.finetune",
    "lora_collection": "rmtkit.collection.finetune",
    "DEFAULT_MIN_EVALS": "rmtkit.analysis.options",
    "analyze": "rmtkit.analysis.analyze",
    "describe": "rmtkit.analysis.analyze",
    "summary": "rmtkit.analysis.analyze",
    "spectra": "rmtkit.analysis.analyze",
    "layer_gof": "rmtkit.analysis.gof",
    "analyze_many": "rmtkit.analysis.many",
    "concat": "rmtkit.analysis.many",
    "model_distances": "rmtkit.analysis.many",
    "quantization_damage": "rmtkit.analysis.quantization",
    "select_layers": "rmtkit.analysis.select",
    "table_columns": "rmtkit.analysis.dataset",
    "local_workers": "rmtkit._engine.executor",
    "Progress": "rmtkit._engine.progress",
    "sharpen": "rmtkit.analysis.transform",
    "smooth": "rmtkit.analysis.transform",
    "WeightWatcher": "rmtkit.facade",
    "Monitor": "rmtkit.monitor",
    "MonitorFlags": "rmtkit.monitor",
    "plot_esd": "rmtkit.plot.layer",
    "plot_pl_candidates": "rmtkit.plot.layer",
    "plot_randomized": "rmtkit.plot.layer",
    "plot_mp": "rmtkit.plot.layer",
    "plot_gof": "rmtkit.plot.gof",
    "plot_gof_bootstrap": "rmtkit.plot.gof",
    "plot_tail_models": "rmtkit.plot.gof",
    "plot_detx": "rmtkit.plot.layer",
    "plot_spacing": "rmtkit.plot.layer",
    "plot_vectors": "rmtkit.plot.layer",
    "plot_layer": "rmtkit.plot.layer",
    "plot_layers": "rmtkit.plot.model",
    "plot_correlation_flow": "rmtkit.plot.model",
    "plot_alpha_hist": "rmtkit.plot.model",
    "plot_model": "rmtkit.plot.model",
}
#: submodules reachable as attributes without an explicit import (``report`` is a callable
#: package: ``rmtkit.report(...)`` writes a report, whether or not ``rmtkit.report.*`` was
#: imported first)
_LAZY_MODULES = ("plot", "monitor", "collection", "adapters", "testing", "report")


def __getattr__(name: str):
    """Import the xarray-based names of :data:`_LAZY` on first access (PEP 562), and
    ``__version__`` from the installed package's metadata (written once, in pyproject.toml)."""
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"rmtkit.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("rmtkit")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0+unknown"
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rmtkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES) | {"__version__"})


__all__ = [
    "alpha_warning",
    "alpha_weighted",
    "analyze",
    "analyze_many",
    "bucket_length",
    "bulk_tail",
    "BulkTail",
    "conv2d_fft_esd",
    "conv2d_fft_svals",
    "concat",
    "correlation_traps",
    "data_path",
    "delta_collection",
    "DEFAULT_MIN_EVALS",
    "describe",
    "DetX",
    "detx",
    "distances",
    "eigenvector_metrics",
    "entropy",
    "errors",
    "esd",
    "fit_pl",
    "fit_tpl",
    "from_layers",
    "intra_matrix",
    "iter_layers",
    "lambda_max",
    "layer_gof",
    "level_spacing",
    "LevelSpacing",
    "load",
    "local_workers",
    "localization_ratio",
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
    "participation_ratio",
    "pl_candidates",
    "pl_compare",
    "pl_pvalue",
    "plot_alpha_hist",
    "plot_correlation_flow",
    "plot_detx",
    "plot_esd",
    "plot_gof",
    "plot_gof_bootstrap",
    "plot_layer",
    "plot_layers",
    "plot_model",
    "plot_mp",
    "plot_pl_candidates",
    "plot_randomized",
    "plot_spacing",
    "plot_tail_models",
    "plot_vectors",
    "PowerLawCandidates",
    "PowerLawComparison",
    "PowerLawFit",
    "Progress",
    "quantization_damage",
    "PowerLawPValue",
    "rand_distance",
    "randomize",
    "report",
    "RowWarning",
    "select_layers",
    "sharpen",
    "slices",
    "smooth",
    "spectra",
    "spacing_ratios",
    "spectral_metrics",
    "SpectralMetrics",
    "stable_rank",
    "stacked_matrix",
    "summary",
    "svd_sharpen",
    "svd_smooth",
    "table_columns",
    "tail_ccdf",
    "TPLFit",
    "TrapStats",
    "unfolded_spacings",
    "validate_collection",
    "vector_entropy",
    "VectorMetrics",
    "weak_rank_loss",
    "WeightWatcher",
]
