r"""Weight transforms on whole collections: SVD sharpening and smoothing (docs/math.md §7).

:func:`sharpen` and :func:`smooth` take a collection (or anything :func:`rmtkit.load` reads)
and return a **new** collection with the same nodes, paths and attributes, where each selected
layer's ``W`` is replaced by its transformed version; the input is never modified. The new
``W`` are lazy: a layer is transformed when it is read (by :func:`rmtkit.analyze`, by an
adapter's write-back such as ``rmtkit.adapters.onnx.save``), so memory holds one layer at a time.
Reading a layer twice recomputes it, with the same result (the randomness has a fixed key).

Biases are untouched (they are not in the collection); convolution kernels are processed per
slice by :func:`rmtkit.svd_sharpen` / :func:`rmtkit.svd_smooth`. A layer with NaN/Inf or all
zeros is passed through unchanged.
"""

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import xarray as xr

from rmtkit._engine.executor import linalg_one_at_a_time
from rmtkit._engine.kernels import FIT_BUCKET_MIN
from rmtkit._engine.spectra import randomized_spectra
from rmtkit.analysis.select import parse_layers, select
from rmtkit.collection.load import load
from rmtkit.collection.tree import build_tree, iter_layers, lazy_map, node_like
from rmtkit.core import validate
from rmtkit.core.esd import CONV_NORM, bucket_length, pad_spectra
from rmtkit.core.mp import MARGINS, mp_fit
from rmtkit.core.svd import SHARPEN_MODES, SMOOTH_METHODS, svd_sharpen, svd_smooth
from rmtkit.errors import InvalidArgumentError

__all__ = ["sharpen", "smooth", "SMOOTH_METHODS"]


def _usable(a: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(a)) and np.any(a))


def _rebuild(weights, layers, make_fn, label: str) -> xr.DataTree:
    """A new collection: selected layers get ``make_fn(w, path)`` applied lazily, others pass."""
    filt = parse_layers(layers)
    tree = load(weights)
    chosen = {path for path, _ in select(tree, filt, layers)}
    nodes = []
    for path, w in iter_layers(tree):
        if path in chosen:
            fn = make_fn(w, path)
            nodes.append((path, node_like(w, lazy_map(w, fn), rmtkit_transform=label)))
        else:
            nodes.append((path, node_like(w, lazy_map(w, lambda a: a))))
    return build_tree(nodes)


def _num_traps(a: np.ndarray, layer_key, margin: str) -> int:
    """Randomized eigenvalues of one layer above the MP bulk edge (``num_traps`` of
    :func:`rmtkit.analyze`: same host draw, spectrum padded to an analysis bucket so the MP
    kernel compiles once per bucket, not per layer shape)."""
    rand, _ = randomized_spectra(a, layer_key, conv_norm=CONV_NORM, replicas=1)
    n_rows, n_cols = max(a.shape[:2]), min(a.shape[:2])
    evals, mask = pad_spectra([rand], length=bucket_length(rand.size, min_length=FIT_BUCKET_MIN))
    fit = mp_fit(evals[0], mask[0], Q=n_rows / n_cols, M=n_cols, margin=margin)
    return int(fit.num_spikes) if bool(fit.ok) else 0


def sharpen(
    weights: Any, key: Any = None, *, mode: str = "zero", margin: str = "ww", layers=None
) -> xr.DataTree:
    """Remove correlation traps from every layer (WeightWatcher ``SVDSharpness``).

    Per layer: randomize ``W`` (key ``fold_in(key, layer_id)``: the draw of
    ``rmtkit.analyze(..., randomize=True, key=key)``), count the randomized eigenvalues above
    the MP bulk edge (``rmtkit.mp_fit``: the analysis's ``num_traps``), and remove that many
    top singular components of ``W`` (``rmtkit.svd_sharpen``: ``mode="zero"`` zeroes them,
    ``"clip"`` shrinks them to the bulk edge). No traps: ``W`` unchanged.

    Parameters
    ----------
    weights : collection, model or path
    key : jax.random key or int, optional
        Default ``jax.random.key(0)`` (reproducible).
    mode : {"zero", "clip"}
    margin : {"ww", "tw95"}
        MP spike margin of the trap count.
    layers : optional
        Which layers to sharpen (:func:`rmtkit.select_layers`); the others are kept.

    Returns
    -------
    xarray.DataTree
        A new collection (lazy), written back with e.g. ``rmtkit.adapters.onnx.save``.
    """
    validate.choice(mode, "mode", SHARPEN_MODES)
    validate.choice(margin, "margin", MARGINS)
    key = validate.as_key(key)

    def make(w, path):
        layer_key = jax.random.fold_in(key, int(w.attrs.get("layer_id", 0)))

        def fn(a):
            if not _usable(a):
                return a
            with jax.enable_x64(True):
                traps = _num_traps(a, layer_key, margin)
                if traps <= 0:
                    return a
                out = linalg_one_at_a_time(svd_sharpen, a, traps, mode=mode, margin=margin)
            return np.asarray(out).astype(a.dtype)

        return fn

    return _rebuild(weights, layers, make, f"sharpen(mode={mode})")


def smooth(
    weights: Any,
    method: str | None = "detX",
    *,
    k: int | Mapping[str, int] | None = None,
    percent: float = 0.2,
    margin: str = "ww",
    layers=None,
) -> xr.DataTree:
    """Keep (or drop) the top singular components of every layer (WeightWatcher
    ``SVDSmoothing``), per slice, with ``rmtkit.svd_smooth``.

    Parameters
    ----------
    weights : collection, model or path
    method : {"detX", "alpha_min", "rmt", "percent"} or None, default "detX"
        How many components each slice keeps: the detX tail, the power-law tail size
        (``num_pl_spikes``), the MP spikes, or ``round(percent * M)``. Ignored when ``k`` is
        given.
    k : int or mapping of layer path to int, optional
        Keep the top ``k`` (> 0) or drop the top ``|k|`` (< 0) components of every slice; a
        mapping gives each layer its own ``k`` (a selected layer it does not name is kept
        unchanged).
    percent : float in (0, 1], default 0.2
    margin : {"ww", "tw95"}
    layers : optional
        Which layers to smooth; the others are kept.
    """
    per_layer = isinstance(k, Mapping)
    if k is None:
        validate.choice(method, "method", SMOOTH_METHODS)
    elif per_layer:
        for path, value in k.items():
            if not validate.is_int(value):
                raise InvalidArgumentError(f"`k[{path!r}]` must be an int; got {value!r}.")
    elif not validate.is_int(k):
        raise InvalidArgumentError(f"`k` must be an int or a mapping of ints; got {k!r}.")
    if not (isinstance(percent, (int, float)) and 0.0 < percent <= 1.0):
        raise InvalidArgumentError(f"`percent` must be in (0, 1]; got {percent!r}.")
    validate.choice(margin, "margin", MARGINS)

    def options(path):
        if k is None:
            return dict(method=method)
        return dict(k=int(k[path] if per_layer else k))

    def make(w, path):
        if per_layer and path not in k:
            return lambda a: a
        kw = options(path)

        def fn(a):
            if not _usable(a):
                return a
            with jax.enable_x64(True):
                out = linalg_one_at_a_time(
                    svd_smooth, a, percent=float(percent), margin=margin, **kw
                )
            return np.asarray(out).astype(a.dtype)

        return fn

    if per_layer:
        label = "smooth(k=per layer)"
    else:
        label = f"smooth(k={k})" if k is not None else f"smooth(method={method})"
    return _rebuild(weights, layers, make, label)
