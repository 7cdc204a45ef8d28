r"""Distances between two weight arrays of the same layer (docs/math.md §8).

Matrices are :math:`N \times M` after orientation (:math:`N \ge M`, :math:`q = N/M`);
convolution kernels ``(fan_out, fan_in[, k | kh, kw])`` are compared as a whole (Frobenius,
cosine) or per slice ``W[:, :, i(, j)]`` (CKA, averaged over the slices).
"""

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Float

from rmtkit.core import validate
from rmtkit.core.esd import canonical_slices, compute_dtype, slices
from rmtkit.errors import InvalidWeightsError

_HI = jax.lax.Precision.HIGHEST
#: the distances :func:`distances` computes
DISTANCES = ("frobenius", "cosine", "cka")


def distances(
    w1: Float[ArrayLike, "fan_out fan_in *k"],
    w2: Float[ArrayLike, "fan_out fan_in *k"],
    *,
    method: str = "frobenius",
    orient: bool = True,
) -> Float[Array, ""]:
    r"""Distance (or similarity, for CKA) between two weight arrays of the same shape.

    * ``"frobenius"``: :math:`\|W_1 - W_2\|_F`;
    * ``"cosine"``: :math:`1 - \langle W_1, W_2\rangle / (\|W_1\|_F \|W_2\|_F)` (0 for
      parallel weights, NaN when either is zero);
    * ``"cka"``: linear CKA similarity of the oriented slices,
      :math:`\|W_1^\top W_2\|_F / \sqrt{\|W_1^\top W_1\|_F \|W_2^\top W_2\|_F}` (1 for
      identical weights; mean over convolution slices). The product :math:`W_1^\top W_2`
      contracts the larger side :math:`N` of each slice; ``orient=False`` takes the slices as
      stored, ``(fan_out, fan_in)``, and contracts ``fan_out`` (WeightWatcher 0.7.7's CKA of a
      dense layer, whose weight it does not orient).

    Parameters
    ----------
    w1, w2 : array, shape (fan_out, fan_in[, k | kh, kw])
        Weights in canonical layout, same shape.
    method : {"frobenius", "cosine", "cka"}, default "frobenius"
    orient : bool, default True
        CKA only: orient each slice :math:`N \ge M` before the product (above).

    Returns
    -------
    0-d array

    References
    ----------
    .. [1] Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations
       Revisited", ICML 2019 (linear CKA).

    Examples
    --------
    >>> a, b = jnp.eye(2), jnp.array([[0.0, 1.0], [1.0, 0.0]])
    >>> float(rmtkit.distances(a, b)), float(rmtkit.distances(a, b, method="cosine"))
    (2.0, 1.0)
    """
    w1 = validate.weights(w1, "W1")
    w2 = validate.weights(w2, "W2")
    if w1.shape != w2.shape:
        raise InvalidWeightsError(
            f"`W1` and `W2` must have the same shape, got {w1.shape} and {w2.shape}; "
            "compare the same layer of two models."
        )
    validate.choice(method, "method", DISTANCES)
    validate.flag(orient, "orient")
    dtype = compute_dtype(jnp.promote_types(w1.dtype, w2.dtype))
    a, b = w1.astype(dtype), w2.astype(dtype)
    if method == "frobenius":
        return jnp.sqrt(jnp.sum((a - b) ** 2))
    if method == "cosine":
        na, nb = jnp.sqrt(jnp.sum(a * a)), jnp.sqrt(jnp.sum(b * b))
        ok = (na > 0) & (nb > 0)
        return jnp.where(ok, 1.0 - jnp.sum(a * b) / jnp.where(ok, na * nb, 1.0), jnp.nan)
    if orient:
        sa, sb = slices(a), slices(b)  # (rf, N, M)
    else:
        sa, sb = canonical_slices(a), canonical_slices(b)  # (rf, fan_out, fan_in)

    def fro(x, y):
        return jnp.sqrt(jnp.sum(jnp.einsum("rni,rnj->rij", x, y, precision=_HI) ** 2, axis=(1, 2)))

    den = jnp.sqrt(fro(sa, sa) * fro(sb, sb))
    ok = den > 0
    cka = jnp.where(ok, fro(sa, sb) / jnp.where(ok, den, 1.0), jnp.nan)
    return jnp.mean(cka)
