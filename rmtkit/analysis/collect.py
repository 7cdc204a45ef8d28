"""Scheduling: the layers of a model streamed through the engine, rows back in layer order.

Each layer's work -- plan its rows, read ``W``, check it, compute its spectra (and randomize it),
drop ``W`` -- is one task (:func:`layer_rows`), run on local threads
(:func:`rmtkit._engine.executor.ordered_map`: ``$RMTKIT_THREADS``, default all cores, one BLAS
thread each, or one worker per two cores for layers with a Gram side from
:data:`rmtkit._engine.host.LARGE_GRAM`, never more workers than layers
(:func:`rmtkit._engine.executor.layer_workers`); the layers in flight bounded by
``$RMTKIT_MEMORY``, default twice the largest layer and at least 512 MiB) or, for dask-backed
weights with a ``dask.distributed`` client active, as one task per layer on the cluster's
workers
(:func:`rmtkit._engine.executor.dask_map`). Rows come back in layer order either way: the
results never depend on the executor, the thread count or the scheduling.
"""

import functools
from collections.abc import Callable

import jax
import numpy as np
import xarray as xr

from rmtkit._engine.executor import (
    dask_client,
    dask_map,
    layer_workers,
    linalg_one_at_a_time,
    memory_budget,
    ordered_map,
)
from rmtkit._engine.host import LARGE_GRAM, footprint
from rmtkit._engine.progress import Progress
from rmtkit._engine.rows import Row
from rmtkit._engine.spectra import inverse_spectrum
from rmtkit.analysis.checks import plan, read_spectra
from rmtkit.analysis.inputs import resolve
from rmtkit.analysis.randomization import portable_key, randomize_rows
from rmtkit.analysis.select import parse_layers, select
from rmtkit.core.esd import CONV_NORM, canonical_slices
from rmtkit.core.vectors import eigenvector_metrics

__all__ = ["collect", "layer_conv_norm", "layer_rows", "vector_rows"]


def layer_conv_norm(rf: int, *, pool: bool, conv2d_norm: bool = True) -> float:
    """The ``conv_norm`` of a layer's spectra (docs/math.md §1): :data:`CONV_NORM` (pooled slices
    times ½, unpooled ones times ``rf/2``), or, with ``conv2d_norm=False`` (WeightWatcher's
    option), no scaling at all (1 pooled, ``1/rf`` so that unpooled slices are times 1)."""
    if conv2d_norm:
        return CONV_NORM
    return 1.0 if pool or rf == 1 else 1.0 / rf


def _cost(item: tuple[str, xr.DataArray]) -> int:
    """Bytes a layer needs while its spectrum is computed
    (:func:`rmtkit._engine.host.footprint`)."""
    w = item[1]
    return footprint(w.shape, w.dtype.itemsize) if w.ndim >= 2 else 0


def _gram_side(chosen: list[tuple[str, xr.DataArray]]) -> int:
    """The largest Gram matrix side among the layers: ``min(W.shape[:2])`` (the smaller side
    of a slice ``W[:, :, i(, j)]``)."""
    return max((min(w.shape[:2]) for _, w in chosen if w.ndim >= 2), default=0)


def layer_rows(
    item: tuple[str, xr.DataArray],
    *,
    pool: bool,
    min_evals: int,
    max_evals: int | None,
    randomize: bool,
    key,
    conv2d_norm: bool = True,
    inverse: bool = False,
    vectors: bool = False,
) -> tuple[str, list[Row]]:
    """One layer's work: plan its rows, read and check ``W``, its spectra (and randomization).

    Runs on a local worker thread or a dask worker; ``key`` is
    :func:`rmtkit.analysis.randomization.portable_key`'s.
    """
    path, w = item
    rows = plan(path, w, pool=pool, min_evals=min_evals, max_evals=max_evals)
    conv_norm = layer_conv_norm(rows[0].rf, pool=pool, conv2d_norm=conv2d_norm)
    if not rows[0].warning:
        a = read_spectra(w, rows, pool=pool, min_evals=min_evals, conv_norm=conv_norm)
        if a is not None and inverse:
            for row in rows:
                if row.evals is not None:
                    row.evals = inverse_spectrum(row.evals)
        if a is not None and vectors:
            vector_rows(a, rows, pool=pool, conv_norm=conv_norm)
        if a is not None and randomize:
            data, impl = key
            randomize_rows(
                a,
                rows,
                jax.random.wrap_key_data(data, impl=impl),
                pool=pool,
                conv_norm=conv_norm,
                inverse=inverse,
            )
    return path, rows


def vector_rows(a: np.ndarray, rows: list[Row], *, pool: bool, conv_norm: float) -> None:
    """The eigenvector metrics (:func:`rmtkit.eigenvector_metrics`) of a layer's rows that have
    a spectrum and no warning, in ``row.extras["vectors"]``: the whole layer for a pooled (or
    dense) row, eigenvalues in its units (times ``conv_norm`` for a kernel); its slice for an
    unpooled row (times ``rf * conv_norm``)."""
    pooled = pool or a.ndim == 2
    with jax.enable_x64(True):
        for row in [rows[0]] if pooled else rows:
            if row.evals is None or row.warning != "":
                continue
            if pooled:
                mat, scale = a, (conv_norm if a.ndim > 2 else 1.0)
            else:
                mat = canonical_slices(a, np)[row.slice_id]
                scale = row.rf * conv_norm
            vm = linalg_one_at_a_time(eigenvector_metrics, np.asarray(mat, np.float64), scale=scale)
            row.extras["vectors"] = {k: np.asarray(v) for k, v in vm._asdict().items()}


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
    conv2d_norm: bool = True,
    inverse: bool = False,
    vectors: bool = False,
    derive: Callable[[list], list] | None = None,
) -> list[Row]:
    """Resolve, select and stream the layers: rows with spectra (and randomization).

    Each layer's rows are handed to ``on_rows`` (on this thread) as soon as they are back.
    ``derive`` turns the selected ``(path, W)`` list into the layers analysed
    (:mod:`rmtkit.analysis.derived`: ``intra``, ``stacked``, ``conv2d_fft``).
    """
    filt = parse_layers(layers)
    tree = resolve(weights, base=base, lora=lora)
    chosen = select(tree, filt, layers)
    if derive is not None:
        chosen = derive(chosen)
    key = portable_key(key) if randomize else None
    options = dict(
        pool=pool,
        min_evals=min_evals,
        max_evals=max_evals,
        randomize=randomize,
        key=key,
        conv2d_norm=conv2d_norm,
        inverse=inverse,
        vectors=vectors,
    )
    client = dask_client(executor, dask_backed=any(w.chunks is not None for _, w in chosen))
    if client is None:
        largest = max((_cost(item) for item in chosen), default=0)
        results = ordered_map(
            functools.partial(layer_rows, **options),
            chosen,
            workers=layer_workers(len(chosen), large=_gram_side(chosen) >= LARGE_GRAM),
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
