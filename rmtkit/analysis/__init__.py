"""The labeled layer: a weight collection in, ``xarray`` Datasets out, one row per layer.

Import rule: modules here import the standard library, ``numpy``, ``jax``, ``xarray``,
:mod:`rmtkit.core`, :mod:`rmtkit._engine`, :mod:`rmtkit.collection`, :mod:`rmtkit.errors` and
each other (no private name of another folder); no framework, no plotting.

- :mod:`~rmtkit.analysis.options` — the options, checked before any layer is read;
- :mod:`~rmtkit.analysis.select` — the ``layers=`` selection language;
- :mod:`~rmtkit.analysis.inputs` — what is analysed (model, ``base=`` delta, LoRA adapter);
- :mod:`~rmtkit.analysis.checks` — the rows of a layer and the checks that label them;
- :mod:`~rmtkit.analysis.randomization` — the randomization of a layer's rows;
- :mod:`~rmtkit.analysis.derived` — layers made of layers (``intra``, ``stacked``) and rows
  whose spectrum is not that of ``W`` (``conv2d_fft``, singular values);
- :mod:`~rmtkit.analysis.collect` — the layers streamed through the engine (scheduling);
- :mod:`~rmtkit.analysis.dataset` — rows in, ``xarray.Dataset`` out;
- :mod:`~rmtkit.analysis.analyze` — :func:`analyze`, :func:`describe`, :func:`spectra`,
  :func:`summary`;
- :mod:`~rmtkit.analysis.many` — :func:`concat`, :func:`analyze_many`, :func:`model_distances`;
- :mod:`~rmtkit.analysis.quantization` — :func:`quantization_damage` (a quantized model
  against its float model: metric shifts, the spectrum of :math:`W_q - W`);
- :mod:`~rmtkit.analysis.transform` — :func:`sharpen`, :func:`smooth` (new collections).
"""

from rmtkit.analysis.analyze import analyze, describe, spectra, summary
from rmtkit.analysis.dataset import TABLE_COLUMNS, table_columns
from rmtkit.analysis.many import analyze_many, concat, model_distances
from rmtkit.analysis.options import DEFAULT_MIN_EVALS, FITS
from rmtkit.analysis.quantization import quantization_damage
from rmtkit.analysis.select import select_layers
from rmtkit.analysis.transform import sharpen, smooth

__all__ = [
    "DEFAULT_MIN_EVALS",
    "FITS",
    "TABLE_COLUMNS",
    "analyze",
    "analyze_many",
    "concat",
    "describe",
    "model_distances",
    "quantization_damage",
    "select_layers",
    "sharpen",
    "smooth",
    "spectra",
    "summary",
    "table_columns",
]
