r"""Eigenvector localization of weight matrices (docs/math.md §11.1).

The right singular vectors :math:`v_j` of an :math:`N \times M` slice (:math:`N \ge M`), i.e.
the eigenvectors of :math:`W^\top W` (:math:`\lambda_j = s_j^2`), are delocalized in a random
matrix (every entry :math:`\approx \pm 1/\sqrt M`) and may localize on a few entries in a
trained layer. Per unit vector :math:`v \in \mathbb R^M`:

* localization ratio :math:`\|v\|_1 / \|v\|_\infty \in [1, M]` (1: one entry; :math:`M`: flat);
* participation ratio :math:`\|v\|_2 / \|v\|_4 \in [1, M^{1/4}]` (:math:`(\sum v_i^4)^{-1/4}`
  for a unit vector; 1: one entry; :math:`M^{1/4}`: flat);
* vector entropy: the Shannon entropy of a 100-bin histogram of :math:`|v_i| -
  \overline{|v|}` (WeightWatcher 0.7.7's ``discrete_entropy``; its bins span the values, so it
  measures the shape of the distribution of the entries, 0 for a flat vector).

Following WeightWatcher (``vectors=True``), the eigenvectors split into the **bulk**
(:math:`\lambda < x_{\min}` of the power-law fit) and the **tail** (:math:`\lambda \ge x_{\min}`),
and each metric is summarised by its mean and variance over each part (:func:`bulk_tail`).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Bool, Float

from rmtkit.core import validate
from rmtkit.core.esd import compute_dtype, oriented_slices

__all__ = [
    "ENTROPY_BINS",
    "VECTOR_METRICS",
    "BulkTail",
    "VectorMetrics",
    "bulk_tail",
    "eigenvector_metrics",
    "localization_ratio",
    "participation_ratio",
    "vector_entropy",
]

#: bins of the histogram of :func:`vector_entropy` (WeightWatcher's ``num_bins``)
ENTROPY_BINS = 100
#: WeightWatcher's tiny floor added to each bin's density before normalising (``EPSILON``)
_EPSILON = 1e-10
#: the metric names, as WeightWatcher's columns spell them (``bulk_mean_<name>``, ...)
VECTOR_METRICS = ("vec_entropy", "loc_ratio", "part_ratio")


def localization_ratio(v: Float[ArrayLike, " m"]) -> Float[Array, ""]:
    r""":math:`\|v\|_1 / \|v\|_\infty`: 1 for a vector on one entry, :math:`m` for a flat one.

    >>> float(rmtkit.localization_ratio(jnp.ones(4)))
    4.0
    """
    v = jnp.abs(validate.spectrum(v, "v"))
    top = jnp.max(v)
    return jnp.where(top > 0, jnp.sum(v) / jnp.where(top > 0, top, 1.0), jnp.nan)


def participation_ratio(v: Float[ArrayLike, " m"]) -> Float[Array, ""]:
    r""":math:`\|v\|_2 / \|v\|_4`: 1 for a vector on one entry, :math:`m^{1/4}` for a flat one.

    >>> float(rmtkit.participation_ratio(jnp.ones(16)))
    2.0
    """
    v = validate.spectrum(v, "v")
    top = jnp.max(jnp.abs(v))
    u = v / jnp.where(top > 0, top, 1.0)  # scale-free, no overflow in the 4th powers
    l2 = jnp.sqrt(jnp.sum(u * u))
    l4 = jnp.sum(u**4) ** 0.25
    return jnp.where(top > 0, l2 / jnp.where(top > 0, l4, 1.0), jnp.nan)


def _histogram_counts(x: ArrayLike, bins: int) -> tuple[Array, Array]:
    """``numpy.histogram(x, bins)[0]`` exactly: ``bins`` equal bins over ``[min, max]`` (or
    ``[v - 0.5, v + 0.5]`` when all values equal ``v``), the last bin closed, with numpy's own
    index computation and edge corrections."""
    lo, hi = jnp.min(x), jnp.max(x)
    flat = lo == hi
    first = jnp.where(flat, lo - 0.5, lo)
    last = jnp.where(flat, hi + 0.5, hi)
    edges = jnp.linspace(first, last, bins + 1)
    norm = bins / (last - first)
    idx = ((x - first) * norm).astype(jnp.int32)
    idx = jnp.where(idx == bins, bins - 1, idx)
    idx = jnp.where(x < edges[idx], idx - 1, idx)
    idx = jnp.where((x >= edges[idx + 1]) & (idx != bins - 1), idx + 1, idx)
    return jnp.zeros(bins, x.dtype).at[idx].add(1.0), (last - first) / bins


def vector_entropy(v: Float[ArrayLike, " m"], *, bins: int = ENTROPY_BINS) -> Float[Array, ""]:
    r"""WeightWatcher's ``discrete_entropy`` of a vector: :math:`-\sum_k p_k \ln p_k` with
    :math:`p_k \propto \rho_k + 10^{-10}`, :math:`\rho_k` the density of a ``bins``-bin
    histogram of :math:`|v_i| - \overline{|v|}` (module docstring)."""
    v = validate.spectrum(v, "v")
    validate.positive(bins, "bins", integer=True)
    finite = jnp.all(jnp.isfinite(v))
    a = jnp.abs(jnp.where(finite, v, 0.0))
    counts, width = _histogram_counts(a - jnp.mean(a), bins)
    density = counts / (v.shape[0] * width)
    p = density + _EPSILON
    p = p / jnp.sum(p)
    return jnp.where(finite, -jnp.sum(p * jnp.log(p)), jnp.nan)


class VectorMetrics(NamedTuple):
    """Result of :func:`eigenvector_metrics`: per eigenvector (arrays of shape ``(rf*M,)``,
    every slice's vectors, ordered by ascending eigenvalue)."""

    evals: Float[Array, " k"]
    vec_entropy: Float[Array, " k"]
    loc_ratio: Float[Array, " k"]
    part_ratio: Float[Array, " k"]


def eigenvector_metrics(
    w: Float[ArrayLike, "fan_out fan_in *k"], *, bins: int = ENTROPY_BINS, scale: float = 1.0
) -> VectorMetrics:
    r"""The localization metrics of every eigenvector of :math:`W^\top W` (module docstring).

    Each slice :math:`W_s` (oriented :math:`N \ge M`, :func:`rmtkit.slices`) gives the
    :math:`M` eigenvectors of its :math:`M \times M` Gram matrix, i.e. its right singular
    vectors; the results of all slices are pooled and sorted by eigenvalue. ``scale``
    multiplies the eigenvalues (e.g. ½ for the pooled units of :func:`rmtkit.esd`).

    Returns
    -------
    VectorMetrics
        ``evals`` (ascending, times ``scale``) and ``vec_entropy``, ``loc_ratio``,
        ``part_ratio`` of the matching eigenvectors; NaN for the vectors of a slice holding
        NaN or Inf.
    """
    w = validate.weights(w)
    validate.positive(bins, "bins", integer=True)
    return _metrics(w.astype(compute_dtype(w.dtype)), bins, scale)


@functools.partial(jax.jit, static_argnames=("bins",))
def _metrics(w, bins, scale) -> VectorMetrics:
    stack = oriented_slices(w, jnp)  # (rf, N, M)
    # a slice with NaN / Inf is decomposed as zeros (LAPACK may not return on NaN) and its
    # results set to NaN
    finite = jnp.all(jnp.isfinite(stack), axis=(1, 2))
    stack = jnp.where(finite[:, None, None], stack, 0.0)
    gram = jnp.einsum("rni,rnj->rij", stack, stack, precision=jax.lax.Precision.HIGHEST)
    evals, vecs = jnp.linalg.eigh(gram)  # vecs[r, :, j]: eigenvector j of slice r
    vecs = jnp.where(finite[:, None, None], vecs, jnp.nan)
    evals = jnp.where(finite[:, None], evals, jnp.nan)
    cols = jnp.swapaxes(vecs, 1, 2).reshape(-1, vecs.shape[1])  # (rf*M, M)
    lam = evals.reshape(-1) * scale
    order = jnp.argsort(lam)
    per = jax.vmap(
        lambda v: (
            vector_entropy(v, bins=bins),
            localization_ratio(v),
            participation_ratio(v),
        )
    )(cols[order])
    return VectorMetrics(lam[order], *per)


class BulkTail(NamedTuple):
    """Means and variances of one metric over the bulk and the tail (:func:`bulk_tail`)."""

    bulk_mean: Float[Array, ""]
    bulk_var: Float[Array, ""]
    tail_mean: Float[Array, ""]
    tail_var: Float[Array, ""]


def bulk_tail(
    values: Float[ArrayLike, " k"],
    evals: Float[ArrayLike, " k"],
    xmin: float | Float[ArrayLike, ""],
    mask: Bool[ArrayLike, " k"] | None = None,
) -> BulkTail:
    r"""Mean and (population) variance of ``values`` over the bulk (:math:`\lambda < x_{\min}`)
    and over the tail (:math:`\lambda \ge x_{\min}`) of their eigenvalues ``evals``; NaN for an
    empty part (and for both when ``xmin`` is NaN)."""
    v, m = validate.spectrum(values, "values"), None
    lam = validate.spectrum(evals, "evals")
    m = validate.mask(mask, like=lam)
    x = jnp.asarray(xmin, lam.dtype)
    bulk = m & (lam < x)
    tail = m & (lam >= x)

    def stats(part):
        n = jnp.sum(part)
        mean = jnp.sum(jnp.where(part, v, 0.0)) / jnp.maximum(n, 1)
        var = jnp.sum(jnp.where(part, (v - mean) ** 2, 0.0)) / jnp.maximum(n, 1)
        nan = jnp.asarray(jnp.nan, v.dtype)
        return jnp.where(n > 0, mean, nan), jnp.where(n > 0, var, nan)

    return BulkTail(*stats(bulk), *stats(tail))
