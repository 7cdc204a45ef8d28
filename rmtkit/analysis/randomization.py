r"""The randomization of a layer's rows (docs/math.md §6), while ``W`` is in memory.

Layer ``i`` of an analysis with key ``key`` is randomized with ``fold_in(key, layer_id)``; each
row permutes :func:`randomization_unit` on the host
(:func:`rmtkit._engine.spectra.randomized_spectra`), and the statistics of the randomized
spectra are computed in the bucket kernels.
"""

import math

import jax
import numpy as np

from rmtkit._engine.rows import Row
from rmtkit._engine.spectra import randomized_spectra
from rmtkit.core import validate
from rmtkit.core.esd import CONV_NORM, canonical_slices

__all__ = ["portable_key", "randomization_unit", "randomize_rows"]


def portable_key(key) -> tuple[np.ndarray, str]:
    """(raw key data, implementation name) of a key option (:func:`rmtkit.core.validate.as_key`):
    plain data for threads and dask tasks."""
    key = validate.as_key(key)
    return np.asarray(jax.random.key_data(key)), str(jax.random.key_impl(key))


def randomization_unit(
    a: np.ndarray, layer_key, slice_id: int | None = None, *, conv_norm: float = CONV_NORM
):
    r"""The matrix a row's randomization permutes, and its key (docs/math.md §6).

    Pooled (or dense) rows, ``slice_id=None``: the whole layer ``a`` with the layer key
    (``randomized_spectra`` permutes each slice and pools the spectra times ``CONV_NORM``).
    Unpooled rows: slice ``slice_id`` alone, times ``sqrt(rf * conv_norm)`` (the units of its
    row), key ``fold_in(layer_key, slice_id)``.
    """
    if slice_id is None:
        return a, layer_key
    stack = canonical_slices(a, np)
    gain = math.sqrt(stack.shape[0] * conv_norm)
    return stack[slice_id].astype(np.float64) * gain, jax.random.fold_in(layer_key, slice_id)


def randomize_rows(
    a: np.ndarray,
    rows: list[Row],
    key,
    *,
    pool: bool,
    conv_norm: float = CONV_NORM,
    inverse: bool = False,
) -> None:
    r"""Randomized spectra (and ``max_rand_eval``) of a layer's rows that have a spectrum and no
    warning; the layer key is ``fold_in(key, layer_id)``."""
    todo = [r for r in rows if r.evals is not None and r.warning == ""]
    if not todo:
        return
    layer_key = jax.random.fold_in(key, rows[0].layer_id)
    pooled = pool or a.ndim == 2  # one row, rows[0], for the whole layer
    for row in [rows[0]] if pooled else rows:
        if row not in todo:
            continue
        mat, k = randomization_unit(
            a, layer_key, None if pooled else row.slice_id, conv_norm=conv_norm
        )
        row.rand_evals, row.values["max_rand_eval"] = randomized_spectra(
            mat, k, conv_norm=conv_norm, inverse=inverse
        )
