r"""Matrices made of several layers (docs/math.md §11.4): products of consecutive layers
(``intra``) and all layers stacked into one (``stacked``), as WeightWatcher 0.7.7 defines them.

* :func:`intra_matrix`: the cross-layer correlation of two consecutive dense layers,
  :math:`X = W_0 S W_1 / (\|W_0\|_F \|W_1\|_F + [\sqrt{\|S\|_F}])`, the weights first aligned
  so that they chain (:func:`align_pair`), :math:`S` an optional random 0/1 "sparsifying" mask
  on the shared dimension (a stand-in for the ReLU between the layers). Its spectrum, in
  WeightWatcher's convention, is the **singular values** of :math:`X` (not their squares).
* :func:`stacked_matrix`: every layer matrix (a convolution's slices side by side) standardised
  entrywise by the global median and each column's median absolute deviation, padded with
  zeros on the right to the widest, stacked vertically, transposed to :math:`N \ge M`.
"""

from collections.abc import Sequence

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Float

from rmtkit.core import validate
from rmtkit.core.esd import compute_dtype

__all__ = ["align_pair", "intra_matrix", "stacked_matrix"]


def align_pair(shape0: Sequence[int], shape1: Sequence[int]) -> tuple[bool, bool] | None:
    r"""How two matrices of shapes ``shape0``, ``shape1`` chain as :math:`W_0 W_1`:
    ``(transpose0, transpose1)``, or None when they share no dimension.

    WeightWatcher's ``align_mats``: the shared dimension is the largest size that occurs
    more than once among the four; :math:`W_0` is transposed unless its second axis has it,
    :math:`W_1` unless its first axis has it. The result chains only if then
    ``W0.shape[1] == W1.shape[0]`` (else None).
    """
    sizes = [int(shape0[0]), int(shape0[1]), int(shape1[0]), int(shape1[1])]
    repeated = [s for s in set(sizes) if sizes.count(s) > 1]
    if not repeated:
        t0 = t1 = False
    else:
        shared = max(repeated)
        t0, t1 = sizes[1] != shared, sizes[2] != shared
    inner0 = sizes[0] if t0 else sizes[1]
    inner1 = sizes[3] if t1 else sizes[2]
    return (t0, t1) if inner0 == inner1 else None


def intra_matrix(
    w0: Float[ArrayLike, "a b"],
    w1: Float[ArrayLike, "c d"],
    *,
    sparsity: Float[ArrayLike, "k k"] | None = None,
) -> Float[Array, "p q"]:
    r"""The cross-layer matrix of two consecutive dense layers (module docstring).

    .. math:: X = \frac{W_0 W_1}{\|W_0\|_F \|W_1\|_F} \quad\text{or}\quad
              X = \frac{W_0 S W_1}{\|W_0\|_F \|W_1\|_F + \sqrt{\|S\|_F}}

    after :func:`align_pair`. ``sparsity`` is the 0/1 matrix :math:`S` on the shared dimension
    (``sparsify=True`` draws it uniformly; WeightWatcher with numpy's global ``randint(2)``).

    Raises
    ------
    InvalidWeightsError
        The layers share no dimension (they do not chain), or ``sparsity`` has the wrong shape.

    Examples
    --------
    >>> x = rmtkit.intra_matrix(jnp.eye(2), 3 * jnp.eye(2))  # (I 3I) / (sqrt2 * 3 sqrt2)
    >>> x.diagonal().tolist()
    [0.5, 0.5]
    """
    a = validate.float_array(w0, "W0")
    b = validate.float_array(w1, "W1")
    if a.ndim != 2 or b.ndim != 2:
        raise validate.InvalidWeightsError(
            f"`W0` and `W1` must be matrices; got shapes {a.shape} and {b.shape}."
        )
    how = align_pair(a.shape, b.shape)
    if how is None:
        raise validate.InvalidWeightsError(
            f"layers of shapes {a.shape} and {b.shape} share no dimension: they do not chain."
        )
    dtype = compute_dtype(jnp.promote_types(a.dtype, b.dtype))
    a = (a.T if how[0] else a).astype(dtype)
    b = (b.T if how[1] else b).astype(dtype)
    norm = jnp.sqrt(jnp.sum(a * a)) * jnp.sqrt(jnp.sum(b * b))
    if sparsity is None:
        return (a @ b) / norm
    s = validate.float_array(sparsity, "sparsity").astype(dtype)
    if s.shape != (a.shape[1], a.shape[1]):
        raise validate.InvalidWeightsError(
            f"`sparsity` must have shape {(a.shape[1], a.shape[1])} (the shared dimension); "
            f"got {s.shape}."
        )
    norm = norm + jnp.sqrt(jnp.sqrt(jnp.sum(s * s)))
    return (a @ s @ b) / norm


def _median(x: Array, axis=None) -> Array:
    """numpy's median (the mean of the two middle values for an even count); the reduced axis
    is kept, so the result broadcasts against ``x``."""
    return jnp.median(x, axis=axis, keepdims=axis is not None)


def stacked_matrix(mats: Sequence[Float[ArrayLike, "_ _"]]) -> Float[Array, "p q"]:
    r"""All layer matrices as one (module docstring; WeightWatcher's ``stacked=True``).

    Each :math:`W` (a convolution: its oriented slices side by side) becomes
    :math:`(W - \mathrm{median}(W)) / \mathrm{MAD}_j(W)`, the median over all entries and the
    median absolute deviation of each column :math:`j` (``scipy.stats.median_abs_deviation``,
    unscaled); the results are padded with zero columns to the widest, stacked vertically and
    transposed when there are more columns than rows. All NaN when an entry is not finite
    (NaN / Inf input, or a column of zero MAD).

    Parameters
    ----------
    mats : sequence of 2-D arrays
        The layers' matrices, in layer order.
    """
    if len(mats) == 0:
        raise validate.InvalidWeightsError("`mats` is empty: nothing to stack.")
    arrays = []
    for i, w in enumerate(mats):
        a = validate.float_array(w, f"mats[{i}]")
        if a.ndim != 2 or 0 in a.shape:
            raise validate.InvalidWeightsError(
                f"`mats[{i}]` must be a non-empty matrix; got shape {a.shape}."
            )
        arrays.append(a)
    dtype = compute_dtype(jnp.result_type(*[a.dtype for a in arrays]))
    width = max(a.shape[1] for a in arrays)
    rows = []
    for a in arrays:
        a = a.astype(dtype)
        mad = _median(jnp.abs(a - _median(a, axis=0)), axis=0)
        z = (a - _median(a)) / mad
        rows.append(jnp.pad(z, ((0, 0), (0, width - a.shape[1]))))
    out = jnp.concatenate(rows, axis=0)
    out = jnp.where(jnp.all(jnp.isfinite(out)), out, jnp.nan)  # a zero MAD or bad input: NaN
    return out.T if out.shape[0] < out.shape[1] else out
