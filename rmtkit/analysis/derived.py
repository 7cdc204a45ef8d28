r"""Layers derived from the selected layers of a model: cross-layer products (``intra``) and
one stacked matrix (``stacked``), docs/math.md §11.4; and the rows whose spectrum is not
that of ``W`` itself (``conv2d_fft``, singular values).

:func:`intra_layers` and :func:`stacked_layers` turn the ``(path, W)`` list of a selection
into a new one (lazy: nothing is read until the layer is analysed), with the node attribute
:data:`SPECTRUM_ATTR` saying how the row's spectrum is made:

- ``"svals"``: the singular values of ``W`` (WeightWatcher's ``intra`` convention), not their
  squares;
- ``"conv2d_fft"``: the eigenvalues of the periodic convolution operator of a conv2d kernel on
  the :data:`rmtkit.core.conv_fft.FFT_GRID` grid (:func:`rmtkit.conv2d_fft_esd`).
"""

import jax
import numpy as np
import xarray as xr

from rmtkit._engine.host import key_rng
from rmtkit.collection import LazyArray, weight_node
from rmtkit.core import validate
from rmtkit.core.conv_fft import FFT_GRID
from rmtkit.core.crosslayer import align_pair, intra_matrix, stacked_matrix
from rmtkit.core.esd import oriented_slices
from rmtkit.errors import InvalidArgumentError

__all__ = [
    "SPECTRUM_ATTR",
    "conv2d_fft_layers",
    "intra_layers",
    "stacked_layers",
]

#: node attribute naming a row's spectrum when it is not that of ``W`` (module docstring)
SPECTRUM_ATTR = "rmtkit_spectrum"


def _f64(fn):
    """``fn`` run with float64 JAX, returning numpy."""

    def run(*args, **kw):
        with jax.enable_x64(True):
            return np.asarray(fn(*args, **kw))

    return run


def _matrix(w: xr.DataArray) -> np.ndarray:
    return np.asarray(w.values, dtype=np.float64)


def intra_layers(
    chosen: list[tuple[str, xr.DataArray]], *, sparsify: bool = True, key=None
) -> list[tuple[str, xr.DataArray]]:
    r"""The cross-layer matrices of consecutive selected layers (WeightWatcher ``intra=True``).

    For each pair of consecutive layers of ``chosen`` (in layer order) that are both 2-D
    (dense, embedding) and chain (:func:`rmtkit.core.crosslayer.align_pair`), one layer
    ``"<path0>.X.<path1>"`` holding :func:`rmtkit.intra_matrix` of the two, with the ``layer_id``
    of the second, kind ``"dense"`` and the spectrum its singular values (``"svals"``).
    ``sparsify=True`` draws the 0/1 mask :math:`S` uniformly from ``fold_in(key, layer_id)``
    (default key 0). A convolution breaks the chain (WeightWatcher multiplies its first kernel
    slice, scaled by √½: docs/math.md §9).

    Raises
    ------
    InvalidArgumentError
        No pair of the selection chains.
    """
    key = validate.as_key(key)
    out = []
    for (path0, w0), (path1, w1) in zip(chosen, chosen[1:], strict=False):
        if w0.ndim != 2 or w1.ndim != 2:
            continue
        how = align_pair(w0.shape, w1.shape)
        if how is None:
            continue
        rows = w0.shape[0] if not how[0] else w0.shape[1]
        shared = w0.shape[1] if not how[0] else w0.shape[0]
        cols = w1.shape[1] if not how[1] else w1.shape[0]
        layer_id = int(w1.attrs.get("layer_id", 0))
        rng_key = jax.random.fold_in(key, layer_id) if sparsify else None

        def load(w0=w0, w1=w1, rng_key=rng_key, shared=shared):
            mask = None
            if rng_key is not None:
                mask = key_rng(rng_key).integers(0, 2, size=(shared, shared)).astype(np.float64)
            return _f64(intra_matrix)(_matrix(w0), _matrix(w1), sparsity=mask)

        node = weight_node(
            LazyArray(load, (rows, cols), np.float64, name=f"{path0} X {path1}"),
            kind="dense",
            source=f"{path0} X {path1}",
            framework="rmtkit",
            op="intra",
            layer_id=layer_id,
            dtype="float64",
            attrs={SPECTRUM_ATTR: "svals", "intra_pair": f"{path0},{path1}"},
        )
        out.append((f"{path0}.X.{path1}".replace("/", "_"), _layer(node)))
    if not out:
        raise InvalidArgumentError(
            "`intra=True`: no two consecutive selected layers are dense matrices that chain "
            f"(selected: {[p for p, _ in chosen][:10]})."
        )
    return out


def _layer(node: xr.Dataset) -> xr.DataArray:
    """The ``W`` of a node with the node's attrs, as :func:`rmtkit.iter_layers` gives it."""
    w = node["W"]
    w.attrs = {**node.attrs, **w.attrs}
    return w


def _stack_parts(w: xr.DataArray) -> tuple[int, int]:
    """Rows and columns of a layer's part of the stacked matrix: a dense matrix as stored, a
    kernel's oriented slices side by side."""
    if w.ndim == 2:
        return int(w.shape[0]), int(w.shape[1])
    rf = int(np.prod(w.shape[2:]))
    n_rows, n_cols = max(w.shape[0], w.shape[1]), min(w.shape[0], w.shape[1])
    return int(n_rows), int(n_cols * rf)


def stacked_layers(chosen: list[tuple[str, xr.DataArray]]) -> list[tuple[str, xr.DataArray]]:
    r"""All selected layers as one layer ``"stacked"`` (:func:`rmtkit.stacked_matrix`;
    WeightWatcher ``stacked=True``): a dense matrix as stored, a kernel's oriented slices side
    by side, ``layer_id`` 0, kind ``"dense"``."""
    parts = [_stack_parts(w) for _, w in chosen]
    n_rows, width = sum(p[0] for p in parts), max(p[1] for p in parts)
    shape = (n_rows, width) if n_rows >= width else (width, n_rows)

    def load():
        mats = []
        for _, w in chosen:
            a = _matrix(w)
            if a.ndim > 2:
                a = np.concatenate(list(oriented_slices(a, np)), axis=1)
            mats.append(a)
        return _f64(stacked_matrix)(mats)

    node = weight_node(
        LazyArray(load, shape, np.float64, name="stacked"),
        kind="dense",
        source="stacked",
        framework="rmtkit",
        op="stacked",
        layer_id=0,
        dtype="float64",
        attrs={"stacked_layers": ",".join(p for p, _ in chosen)},
    )
    return [("stacked", _layer(node))]


def conv2d_fft_layers(chosen: list[tuple[str, xr.DataArray]]) -> list[tuple[str, xr.DataArray]]:
    """``chosen`` with every conv2d layer marked to be analysed by the spectrum of its
    convolution operator on the :data:`FFT_GRID` grid (``"conv2d_fft"``)."""
    out = []
    for path, w in chosen:
        if w.ndim == 4 and max(w.shape[2:]) <= FFT_GRID:
            w = w.copy(deep=False)
            w.attrs = {**w.attrs, SPECTRUM_ATTR: "conv2d_fft"}
        out.append((path, w))
    return out
