"""Several models: results stacked along a new dim, many models analysed, two models compared.

:func:`concat` stacks per-model results (``model``, ``epoch``, ...), :func:`analyze_many` runs
:func:`rmtkit.analyze` over many models (one task per model on a dask cluster when one is
active), and :func:`model_distances` compares the weights of two models layer by layer.
"""

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import xarray as xr

from rmtkit._engine.executor import dask_client, dask_map, local_workers
from rmtkit.analysis.analyze import analyze
from rmtkit.analysis.checks import plan, read_weights
from rmtkit.analysis.dataset import rows_dataset
from rmtkit.analysis.inputs import describe_input
from rmtkit.analysis.select import parse_layers, select
from rmtkit.collection.load import load
from rmtkit.collection.tree import iter_layers
from rmtkit.core import validate
from rmtkit.core.distance import DISTANCES, distances
from rmtkit.errors import InvalidArgumentError, RowWarning

__all__ = ["analyze_many", "concat", "model_distances"]


def _fill_value(dtype):
    """The padding of a variable of this dtype in :func:`concat`."""
    if dtype.kind in "US":
        return ""
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    if dtype.kind == "O":
        return ""
    return np.nan


def _pad_layers(ds: xr.Dataset, n: int) -> xr.Dataset:
    """``ds`` with its ``layer`` dim padded to ``n`` rows ('' / -1 / NaN fill)."""
    k = ds.sizes.get("layer", 0)
    if k == n:
        return ds

    def pad(var: xr.Variable) -> xr.Variable:
        if "layer" not in var.dims:
            return var
        axis = var.dims.index("layer")
        values = np.asarray(var.values)
        shape = list(values.shape)
        shape[axis] = n - k
        fill = np.full(
            shape,
            _fill_value(values.dtype),
            dtype=values.dtype if values.dtype.kind not in "US" else values.dtype,
        )
        return xr.Variable(var.dims, np.concatenate([values, fill], axis=axis), var.attrs)

    data = {name: pad(v.variable) for name, v in ds.data_vars.items()}
    coords = {name: pad(c.variable) for name, c in ds.coords.items()}
    return xr.Dataset(data, coords=coords, attrs=ds.attrs)


def concat(
    results: Mapping[str, xr.Dataset] | Sequence[xr.Dataset],
    *,
    dim: str = "model",
    names: Sequence[str] | None = None,
) -> xr.Dataset:
    """Stack per-model results (of :func:`analyze`) along a new dim (``model``, ``epoch``, ...).

    Models with fewer rows are padded (NaN metrics, ``""`` names, ``-1`` ids); the per-layer
    coordinates become 2-D ``(dim, layer)``. The result saves with ``to_netcdf``.
    """
    if isinstance(results, Mapping):
        names, results = list(results.keys()), list(results.values())
    results = list(results)
    if not results:
        raise InvalidArgumentError("`results` is empty: nothing to concatenate.")
    names = list(range(len(results))) if names is None else list(names)
    if len(names) != len(results):
        raise InvalidArgumentError(
            f"{len(names)} names for {len(results)} results: give one name per result."
        )
    n = max(ds.sizes.get("layer", 0) for ds in results)
    padded = [_pad_layers(ds, n) for ds in results]
    import pandas as pd

    return xr.concat(
        padded,
        dim=pd.Index(names, name=dim),
        data_vars="all",
        coords="all",
        compat="equals",
        join="outer",
        combine_attrs="drop_conflicts",
    )


def _analyze_task(model: Any, **kwargs) -> xr.Dataset:
    """:func:`analyze` as one task of a cluster: one thread (the cluster runs tasks in
    parallel; threads inside a task would oversubscribe the worker's cores)."""
    with local_workers(1):
        return analyze(model, **kwargs)


def analyze_many(
    models: Mapping[str, Any] | Sequence[Any], *, dim: str = "model", executor: Any = None, **kwargs
) -> xr.Dataset:
    """:func:`analyze` each model (mapping name -> model, or a sequence) and :func:`concat`.

    With a ``dask.distributed`` client active (or ``executor="dask"`` / a ``Client``), each
    model is one task on the cluster's workers (a path is read where its task runs: the
    workers need the files), the results are gathered in order; ``executor="threads"`` keeps
    everything in this process. ``kwargs`` are :func:`analyze`'s.
    """
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = [
            (
                describe_input(m)
                if isinstance(m, (str, bytes)) or hasattr(m, "__fspath__")
                else str(i),
                m,
            )
            for i, m in enumerate(models)
        ]
    if not items:
        raise InvalidArgumentError("`models` is empty.")
    client = dask_client(executor, dask_backed=True)
    if client is None:
        results = {name: analyze(m, executor=executor, **kwargs) for name, m in items}
    else:
        kwargs = dict(kwargs, progress=False, executor="threads")
        done = dask_map(
            client, functools.partial(_analyze_task, **kwargs), [(m,) for _, m in items]
        )
        results = dict(zip([name for name, _ in items], done, strict=True))
    return concat(results, dim=dim)


def model_distances(
    a: Any, b: Any, *, method: str | Sequence[str] = DISTANCES, layers=None
) -> xr.Dataset:
    """Per-layer distances between two models' weights, layers matched by exact node path.

    Returns a Dataset with dim ``layer`` (the matched layers of ``a``, in its order), coords
    ``name, kind, layer_id``, one variable per method (``rmtkit.distances``: "frobenius",
    "cosine", "cka"). Layers absent from ``b`` or of another shape are NaN with ``warning``
    "no-match"; a layer either model cannot read, "read-failed: ..." (the others go on); one
    with non-finite weights, "non-finite-weights".
    """
    methods = [method] if isinstance(method, str) else list(method)
    for m in methods:
        validate.choice(m, "method", DISTANCES)
    filt = parse_layers(layers)
    tree_a, tree_b = load(a), load(b)
    other = dict(iter_layers(tree_b))
    rows, values = [], {m: [] for m in methods}
    with jax.enable_x64(True):
        for path, w in select(tree_a, filt, layers):
            rows.append(plan(path, w, pool=True, min_evals=0, max_evals=None)[0])
            wb = other.get(path)
            wa_np = wb_np = None
            if wb is None or wb.shape != w.shape:
                reason = RowWarning.NO_MATCH
            else:  # a layer either model cannot read is its row's warning, as in analyze
                wa_np, reason = read_weights(w)
                if not reason:
                    wb_np, reason = read_weights(wb)
                if not reason and not (np.all(np.isfinite(wa_np)) and np.all(np.isfinite(wb_np))):
                    reason = RowWarning.NON_FINITE_WEIGHTS
            rows[-1].warning = reason
            for m in methods:
                values[m].append(
                    np.nan
                    if reason
                    else float(
                        distances(
                            np.asarray(wa_np, np.float64), np.asarray(wb_np, np.float64), method=m
                        )
                    )
                )
            del wa_np, wb_np
    for r, i in zip(rows, range(len(rows)), strict=True):
        r.values = {m: values[m][i] for m in methods}
    return rows_dataset(
        rows,
        methods,
        pool=True,
        attrs={
            "rmtkit_function": "model_distances",
            "a": describe_input(a),
            "b": describe_input(b),
        },
    )
