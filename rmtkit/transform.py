r"""Weight transforms on whole collections: SVD sharpening and smoothing (SPEC §7).

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

from typing import Any

import jax
import numpy as np
import xarray as xr

from rmtkit.analysis import _as_key, _parse_layers, _select
from rmtkit.collection import build_tree, iter_layers
from rmtkit.errors import InvalidArgumentError
from rmtkit.finetune import lazy_map, node_like

__all__ = ["sharpen", "smooth", "SMOOTH_METHODS"]

SMOOTH_METHODS = ("detX", "alpha_min", "rmt", "percent")


def _usable(a: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(a)) and np.any(a))


def _rebuild(weights, layers, make_fn, label: str) -> xr.DataTree:
    """A new collection: selected layers get ``make_fn(w)`` applied lazily, others pass."""
    from rmtkit._load import load

    filt = _parse_layers(layers)
    tree = load(weights)
    chosen = {path for path, _ in _select(tree, filt, layers)}
    nodes = []
    for path, w in iter_layers(tree):
        if path in chosen:
            fn = make_fn(w)
            nodes.append((path, node_like(w, lazy_map(w, fn), rmtkit_transform=label)))
        else:
            nodes.append((path, node_like(w, lazy_map(w, lambda a: a))))
    return build_tree(nodes)


def _num_traps(a: np.ndarray, layer_key, margin: str) -> int:
    """Randomized eigenvalues of one layer above the MP bulk edge (``num_traps`` of
    :func:`rmtkit.analyze`: same host draw, spectrum padded to an analysis bucket so the MP
    kernel compiles once per bucket, not per layer shape)."""
    from rmtkit._host import randomized_spectra
    from rmtkit.analysis import CONV_NORM, MIN_BUCKET
    from rmtkit.esd import bucket_length, pad_spectra
    from rmtkit.mp import mp_fit

    rand, _ = randomized_spectra(a, layer_key, conv_norm=CONV_NORM, replicas=1)
    n_rows, n_cols = max(a.shape[:2]), min(a.shape[:2])
    evals, mask = pad_spectra([rand], length=bucket_length(rand.size, min_length=MIN_BUCKET))
    fit = mp_fit(evals[0], mask[0], Q=n_rows / n_cols, M=n_cols, margin=margin)
    return int(fit.num_spikes) if bool(fit.ok) else 0


def sharpen(weights: Any, key: Any = None, *, mode: str = "zero", margin: str = "ww",
            layers=None) -> xr.DataTree:
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
    if mode not in ("zero", "clip"):
        raise InvalidArgumentError(f"`mode` must be 'zero' or 'clip'; got {mode!r}.")
    if margin not in ("ww", "tw95"):
        raise InvalidArgumentError(f"`margin` must be 'ww' or 'tw95'; got {margin!r}.")
    key = _as_key(key)
    try:
        jax.random.fold_in(key, 0)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(
            f"`key` must be a jax.random key or an int seed; got {key!r}.") from err

    def make(w):
        layer_key = jax.random.fold_in(key, int(w.attrs.get("layer_id", 0)))

        def fn(a):
            if not _usable(a):
                return a
            from rmtkit.svd import svd_sharpen

            with jax.enable_x64(True):
                traps = _num_traps(a, layer_key, margin)
                if traps <= 0:
                    return a
                return np.asarray(svd_sharpen(a, traps, mode=mode, margin=margin)).astype(a.dtype)
        return fn

    return _rebuild(weights, layers, make, f"sharpen(mode={mode})")


def smooth(weights: Any, method: str | None = "detX", *, k: int | None = None,
           percent: float = 0.2, margin: str = "ww", layers=None) -> xr.DataTree:
    """Keep (or drop) the top singular components of every layer (WeightWatcher
    ``SVDSmoothing``), per slice, with ``rmtkit.svd_smooth``.

    Parameters
    ----------
    weights : collection, model or path
    method : {"detX", "alpha_min", "rmt", "percent"} or None, default "detX"
        How many components each slice keeps: the detX tail, the power-law tail size
        (``num_pl_spikes``), the MP spikes, or ``round(percent * M)``. Ignored when ``k`` is
        given.
    k : int, optional
        Keep the top ``k`` (> 0) or drop the top ``|k|`` (< 0) components of every slice.
    percent : float in (0, 1], default 0.2
    margin : {"ww", "tw95"}
    layers : optional
        Which layers to smooth; the others are kept.
    """
    if k is None:
        if method not in SMOOTH_METHODS:
            raise InvalidArgumentError(
                f"`method` must be one of {', '.join(map(repr, SMOOTH_METHODS))}; got {method!r}.")
    elif isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidArgumentError(f"`k` must be an int; got {k!r}.")
    if not (isinstance(percent, (int, float)) and 0.0 < percent <= 1.0):
        raise InvalidArgumentError(f"`percent` must be in (0, 1]; got {percent!r}.")
    if margin not in ("ww", "tw95"):
        raise InvalidArgumentError(f"`margin` must be 'ww' or 'tw95'; got {margin!r}.")
    kw = dict(k=int(k)) if k is not None else dict(method=method)

    def make(w):
        def fn(a):
            if not _usable(a):
                return a
            from rmtkit.svd import svd_smooth

            with jax.enable_x64(True):
                return np.asarray(svd_smooth(a, percent=float(percent), margin=margin, **kw)
                                  ).astype(a.dtype)
        return fn

    label = f"smooth(k={k})" if k is not None else f"smooth(method={method})"
    return _rebuild(weights, layers, make, label)
