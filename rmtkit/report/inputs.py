"""What a report is about: the ``details_or_models`` argument of :func:`rmtkit.report`, read
as a list of named models, each with its analysis and (when known) its weights.

- an :func:`rmtkit.analyze` Dataset (dim ``layer``): one model; with one more dim (``model``
  from :func:`rmtkit.concat` / :func:`rmtkit.analyze_many`, ``epoch`` from a
  :class:`rmtkit.Monitor` history), one model per entry of it, in order: a series;
- a path to a netCDF file of such a Dataset (``.nc``);
- a model (object, file or folder; anything :func:`rmtkit.analyze` reads): analyzed here;
- a mapping ``{name: Dataset or model}`` or a list of them: a series, in the order given.

A mapping or list whose values are arrays, mappings or lists is one model (a state dict or a
pytree), not a series: to report a series of pytrees, analyze them and pass the Dataset.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

import rmtkit
from rmtkit.errors import InvalidArgumentError

__all__ = ["ModelInput", "SPECTRA_OPTIONS", "gather"]

#: options of :func:`rmtkit.analyze` that say how its spectra were computed; with Datasets
#: (no analysis here) they are the only ones accepted, and go to :func:`rmtkit.spectra`
SPECTRA_OPTIONS = ("base", "lora", "executor")


class ModelInput(NamedTuple):
    """One model of a report: its ``name``, its analysis ``details`` and its ``weights`` (the
    model the per-layer spectra are computed from; None: no per-layer figures)."""

    name: str
    details: xr.Dataset
    weights: Any


def _is_path(obj) -> bool:
    return isinstance(obj, str) or isinstance(obj, os.PathLike)


def _is_series_item(obj) -> bool:
    """A value that is a whole model (or its analysis), not a part of a pytree / state dict."""
    if isinstance(obj, (xr.Dataset, xr.DataTree)) or _is_path(obj):
        return True
    return not isinstance(obj, (Mapping, list, tuple, bytes)) and not hasattr(obj, "shape")


def _names(items: Sequence[Any]) -> list[str]:
    """Names of unnamed models: a path's file name (``#2``... when repeated), else ``model i``."""
    names, seen = [], {}
    for i, obj in enumerate(items):
        stem = Path(obj).name if _is_path(obj) else f"model {i}"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}#{seen[stem]}")
    return names


def _series_dim(details: xr.Dataset) -> str | None:
    """The one dim besides ``layer`` (None if there is none)."""
    extra = [d for d in details.dims if d != "layer"]
    if len(extra) > 1:
        raise InvalidArgumentError(
            f"`details` has dims {tuple(details.dims)}: a report takes one model (dim 'layer') "
            "or one series of models (one more dim, e.g. 'model' or 'epoch'); select the "
            f"others first, e.g. details.isel({extra[-1]}=0)."
        )
    return extra[0] if extra else None


def _check_dataset(details: xr.Dataset) -> None:
    if details.data_vars and "layer" not in details.dims:
        raise InvalidArgumentError(
            f"`details` must be an analysis with dim 'layer' (rmtkit.analyze); got a Dataset "
            f"with dims {tuple(details.dims)} and variables {sorted(details.data_vars)[:6]} "
            "(a summary? pass the per-layer details instead)."
        )


def _split(details: xr.Dataset, dim: str) -> list[tuple[str, xr.Dataset]]:
    """One Dataset per entry of ``dim``, without the rows :func:`rmtkit.concat` padded."""
    labels = details[dim].values if dim in details.coords else np.arange(details.sizes[dim])
    out = []
    for i, label in enumerate(labels):
        sub = details.isel({dim: i})
        if "layer" in sub.dims and sub.sizes["layer"]:
            if "layer_id" in sub.coords:
                keep = np.asarray(sub["layer_id"].values) >= 0
            elif "name" in sub.coords or "name" in sub.data_vars:
                keep = np.asarray(sub["name"].values).astype(str) != ""
            else:
                keep = np.ones(sub.sizes["layer"], dtype=bool)
            sub = sub.isel(layer=np.flatnonzero(keep))
        out.append((str(label), sub.drop_vars(dim, errors="ignore")))
    return out


def _weights_of(weights, name: str, many: bool):
    """The weights of model ``name``: ``weights`` itself for one model, ``weights[name]`` (or
    None) for a series."""
    if weights is None or not many:
        return weights
    if not isinstance(weights, Mapping):
        raise InvalidArgumentError(
            "`weights` of a series must be a mapping {model name: weights}; got "
            f"{type(weights).__name__}."
        )
    return weights.get(name)


def _name_of(obj: Any, details: xr.Dataset | None = None) -> str:
    """A single model's name: the file name of a path (or of the analysis' ``model`` attr),
    else the object's type."""
    if _is_path(obj):
        return Path(obj).name or str(obj)
    model = details.attrs.get("model") if details is not None else None
    if isinstance(model, str) and model not in ("", "None"):
        return Path(model).name or model
    return "model" if obj is None else type(obj).__name__


def _load_nc(path) -> xr.Dataset:
    """A saved analysis (``details.to_netcdf``, ``rmtkit analyze --out x.nc``, a Monitor)."""
    if not Path(path).is_file():
        raise InvalidArgumentError(f"{path}: no such netCDF file")
    return xr.load_dataset(path)


def _is_nc(obj) -> bool:
    return _is_path(obj) and str(obj).lower().endswith(".nc")


def _items(obj) -> tuple[list[tuple[str, Any]], str | None, bool]:
    """``(items, series dim, several)``: the named models in ``details_or_models``."""
    if isinstance(obj, xr.Dataset):
        _check_dataset(obj)
        dim = _series_dim(obj)
        if dim is None:
            return [(_name_of(None, obj), obj)], None, False
        return _split(obj, dim), dim, True
    if isinstance(obj, xr.DataTree):  # a weight collection (a Mapping of its nodes)
        return [(_name_of(obj), obj)], None, False
    if isinstance(obj, (Mapping, list, tuple)) and not obj:
        raise InvalidArgumentError("`details_or_models` is empty: nothing to report.")
    if isinstance(obj, Mapping) and all(_is_series_item(v) for v in obj.values()):
        return [(str(k), v) for k, v in obj.items()], None, True
    if isinstance(obj, (list, tuple)) and all(_is_series_item(v) for v in obj):
        return list(zip(_names(obj), obj, strict=True)), None, True
    return [(_name_of(obj), obj)], None, False


def gather(
    details_or_models: Any,
    *,
    weights: Any = None,
    key: Any = None,
    progress: bool | str = True,
    analyze_kwargs: Mapping[str, Any],
) -> tuple[list[ModelInput], str]:
    """The models of a report and the name of their series dim (``"model"`` by default).

    Models are analyzed here with ``rmtkit.analyze(model, key=key, progress=progress,
    **analyze_kwargs)``; Datasets (and ``.nc`` files) are taken as they are, with their
    ``weights`` (``analyze_kwargs`` may then only hold :data:`SPECTRA_OPTIONS`).
    """
    obj = details_or_models
    items, dim, several = _items(_load_nc(obj) if _is_nc(obj) else obj)
    items = [(name, _load_nc(v) if _is_nc(v) else v) for name, v in items]
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"model names must be unique; got {names}.")
    analyzed = [isinstance(v, xr.Dataset) for _, v in items]
    extra = sorted(set(analyze_kwargs) - set(SPECTRA_OPTIONS))
    if extra and all(analyzed):
        raise InvalidArgumentError(
            f"analysis options {extra} apply to models analyzed here; the report was given "
            "Datasets (already analyzed): drop them, or pass the models instead."
        )
    if weights is not None and not any(analyzed):
        raise InvalidArgumentError(
            "`weights` is for Datasets (analyses made elsewhere); models given directly are "
            "their own weights."
        )
    out = []
    for name, value in items:
        if isinstance(value, xr.Dataset):
            _check_dataset(value)
            if _series_dim(value) is not None:
                raise InvalidArgumentError(
                    f"model {name!r}: a Dataset of a series must have the dim 'layer' only; "
                    f"got {tuple(value.dims)}."
                )
            out.append(ModelInput(name, value, _weights_of(weights, name, several)))
        else:
            details = rmtkit.analyze(value, key=key, progress=progress, **analyze_kwargs)
            out.append(ModelInput(name, details, value))
    return out, dim or "model"
