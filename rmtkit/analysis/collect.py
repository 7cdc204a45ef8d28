"""Scheduling: the layers of a model streamed through the engine, rows back in layer order.

Each layer's work -- plan its rows, read ``W``, check it, compute its spectra (and randomize it),
drop ``W`` -- is one task (:func:`layer_rows`), run on local threads
(:func:`rmtkit._engine.executor.ordered_map`: ``$RMTKIT_THREADS``, default all cores, one BLAS
thread each, the layers in flight bounded by ``$RMTKIT_MEMORY``, default twice the largest
layer and at least 512 MiB) or, for dask-backed weights with a ``dask.distributed`` client
active, as one task per layer on the cluster's workers
(:func:`rmtkit._engine.executor.dask_map`). Rows come back in layer order either way: the
results never depend on the executor, the thread count or the scheduling.
"""

import functools
from collections.abc import Callable

import jax
import numpy as np
import xarray as xr

from rmtkit._engine.executor import dask_client, dask_map, memory_budget, ordered_map
from rmtkit._engine.host import footprint
from rmtkit._engine.progress import Progress
from rmtkit._engine.rows import Row
from rmtkit.analysis.checks import plan, read_spectra
from rmtkit.analysis.inputs import resolve
from rmtkit.analysis.randomization import portable_key, randomize_rows
from rmtkit.analysis.select import parse_layers, select

__all__ = ["collect", "layer_rows"]


def _cost(item: tuple[str, xr.DataArray]) -> int:
    """Bytes a layer needs while its spectrum is computed
    (:func:`rmtkit._engine.host.footprint`)."""
    w = item[1]
    return footprint(w.shape, w.dtype.itemsize) if w.ndim >= 2 else 0


def layer_rows(
    item: tuple[str, xr.DataArray],
    *,
    pool: bool,
    min_evals: int,
    max_evals: int | None,
    randomize: bool,
    key,
) -> tuple[str, list[Row]]:
    """One layer's work: plan its rows, read and check ``W``, its spectra (and randomization).

    Runs on a local worker thread or a dask worker; ``key`` is
    :func:`rmtkit.analysis.randomization.portable_key`'s.
    """
    path, w = item
    rows = plan(path, w, pool=pool, min_evals=min_evals, max_evals=max_evals)
    if not rows[0].warning:
        a = read_spectra(w, rows, pool=pool, min_evals=min_evals)
        if a is not None and randomize:
            data, impl = key
            randomize_rows(a, rows, jax.random.wrap_key_data(data, impl=impl), pool=pool)
    return path, rows


def _remote_layer(
    path: str, dims: tuple, attrs: dict, array: np.ndarray, options: dict
) -> tuple[str, list[Row]]:
    """:func:`layer_rows` of one layer's array on a dask worker (rebuilt as a DataArray)."""
    return layer_rows((path, xr.DataArray(array, dims=dims, attrs=attrs)), **options)


def collect(
    weights,
    *,
    layers,
    min_evals,
    max_evals,
    pool,
    base,
    lora,
    progress,
    randomize=False,
    key=None,
    label="rmtkit",
    executor=None,
    on_rows: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """Resolve, select and stream the layers: rows with spectra (and randomization).

    Each layer's rows are handed to ``on_rows`` (on this thread) as soon as they are back.
    """
    filt = parse_layers(layers)
    tree = resolve(weights, base=base, lora=lora)
    chosen = select(tree, filt, layers)
    key = portable_key(key) if randomize else None
    options = dict(
        pool=pool, min_evals=min_evals, max_evals=max_evals, randomize=randomize, key=key
    )
    client = dask_client(executor, dask_backed=any(w.chunks is not None for _, w in chosen))
    if client is None:
        largest = max((_cost(item) for item in chosen), default=0)
        results = ordered_map(
            functools.partial(layer_rows, **options),
            chosen,
            cost=_cost,
            budget=memory_budget(largest),
        )
    else:
        results = dask_map(
            client,
            _remote_layer,
            [
                (
                    path,
                    w.dims,
                    dict(w.attrs),
                    w.data if w.chunks is not None else w.chunk().data,
                    options,
                )
                for path, w in chosen
            ],
        )
    bar = Progress(len(chosen), progress, label)
    rows: list[Row] = []
    try:
        for path, layer_rows_ in results:
            rows.extend(layer_rows_)
            if on_rows is not None:
                on_rows(layer_rows_)
            bar.step(path)
    finally:
        bar.close()
    return rows
