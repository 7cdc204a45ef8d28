r"""Quantization damage: what quantizing a model did to each layer (docs/math.md §10).

:func:`quantization_damage` compares a quantized model :math:`W_q` with the float model
:math:`W` it was made from, layer by layer (layers matched by node path, as ``base=`` does):

- the *metric shifts* :math:`m(W_q) - m(W)` of ``alpha``, ``alpha_weighted``,
  ``log_spectral_norm`` and ``stable_rank`` (HT-SR reads the quantized model as a different
  model: do the metrics survive quantization?);
- the *quantization error* :math:`E = W_q - W` as a matrix of its own (:func:`rmtkit.analyze`
  with ``base=`` and ``mp_fit=True``): its relative size :math:`\lVert E\rVert_F /
  \lVert W\rVert_F` and a Marchenko-Pastur fit of its spectrum. Rounding to a uniform grid of
  step :math:`s` gives nearly independent errors of variance :math:`s^2/12`: a white-noise
  :math:`E` is an MP bulk with no spikes (``error_num_spikes`` 0) of scale
  ``error_sigma_mp``; spikes mean the error is correlated (structured) — a few directions of
  the layer were damaged more than noise would.

The spectrum itself is ``rmtkit.spectra(quantized, base=reference)``.
"""

from typing import Any

import numpy as np
import xarray as xr

from rmtkit.analysis.analyze import analyze
from rmtkit.analysis.inputs import describe_input
from rmtkit.analysis.options import DEFAULT_MIN_EVALS
from rmtkit.errors import RowWarning

__all__ = ["DAMAGE_VARS", "ERROR_VARS", "quantization_damage"]

#: metrics whose shift :func:`quantization_damage` reports
DAMAGE_VARS = ("alpha", "alpha_weighted", "log_spectral_norm", "stable_rank")
#: variables of the analysis of :math:`W_q - W` it reports, prefixed ``error_``
ERROR_VARS = ("sigma_mp", "num_spikes", "bulk_max", "mp_softrank", "lambda_max", "alpha")


def _by_name(details: xr.Dataset, names: np.ndarray, var: str) -> np.ndarray:
    """``details[var]`` at the rows named ``names`` (NaN where it has no such row)."""
    index = {str(n): i for i, n in enumerate(details["name"].values)}
    values = np.asarray(details[var].values, np.float64)
    return np.array([values[index[str(n)]] if str(n) in index else np.nan for n in names])


def quantization_damage(
    quantized: Any,
    reference: Any,
    *,
    layers=None,
    min_evals: int = DEFAULT_MIN_EVALS,
    fit: str = "PL",
    progress: bool | str = False,
    executor: Any = None,
) -> xr.Dataset:
    r"""Per-layer damage of quantization: metric shifts and the spectrum of :math:`W_q - W`.

    Parameters
    ----------
    quantized, reference : model, path or collection
        The quantized model and the float model it was made from (anything
        :func:`rmtkit.load` reads; e.g. ``int8.onnx`` and ``float.onnx``). Layers are matched
        by node path; the ONNX adapter gives a quantized layer its float layer's path.
    layers, min_evals, fit, progress, executor
        As in :func:`rmtkit.analyze` (applied to the three analyses).

    Returns
    -------
    xarray.Dataset
        Dim ``layer`` (the rows of ``quantized``, with its coordinates: ``name, kind, ...,
        source, quant``); for each ``m`` of :data:`DAMAGE_VARS`: ``m`` (quantized),
        ``m_ref`` (float) and ``delta_m`` (= ``m - m_ref``); ``rel_error`` =
        :math:`\lVert W_q - W\rVert_F / \lVert W\rVert_F` (0 for a layer left in float);
        ``error_<v>`` for ``v`` in
        :data:`ERROR_VARS` (the analysis of :math:`W_q - W` with the MP fit); ``warning``
        (of the quantized model's row) and ``error_warning`` (of the error's row: e.g.
        ``no-base-layer`` when the reference has no such layer).

    Examples
    --------
    >>> d = rmtkit.quantization_damage("int8.onnx", "float.onnx")  # doctest: +SKIP
    >>> d[["quant", "delta_alpha", "rel_error"]].to_dataframe()  # doctest: +SKIP
    """
    kw = dict(layers=layers, min_evals=min_evals, fit=fit, progress=progress, executor=executor)
    dq = analyze(quantized, **kw)
    dr = analyze(reference, **kw)
    de = analyze(quantized, base=reference, mp_fit=True, **kw)
    names = dq["name"].values
    data: dict[str, Any] = {}
    for var in DAMAGE_VARS:
        q = np.asarray(dq[var].values, np.float64)
        ref = _by_name(dr, names, var)
        data[var] = ("layer", q)
        data[f"{var}_ref"] = ("layer", ref)
        data[f"delta_{var}"] = ("layer", q - ref)
    err_norm = _by_name(de, names, "norm")
    ref_norm = _by_name(dr, names, "norm")
    index = {str(n): i for i, n in enumerate(de["name"].values)}
    labels = [str(de["warning"].values[index[str(n)]]) if str(n) in index else "" for n in names]
    unchanged = np.array([label == RowWarning.ALL_ZERO for label in labels], bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.sqrt(err_norm / ref_norm)
    data["rel_error"] = ("layer", np.where(unchanged, 0.0, rel))  # W_q == W: no error
    for var in ERROR_VARS:
        data[f"error_{var}"] = ("layer", _by_name(de, names, var))
    data["warning"] = ("layer", np.asarray(dq["warning"].values))
    data["error_warning"] = ("layer", np.array(labels, dtype=object).astype(str))
    coords = {k: v.variable for k, v in dq.coords.items()}
    attrs = {
        "rmtkit_function": "quantization_damage",
        "quantized": describe_input(quantized),
        "reference": describe_input(reference),
        "min_evals": min_evals,
        "fit": fit,
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)
