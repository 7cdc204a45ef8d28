r"""Empirical spectral densities (ESDs) of weight matrices (docs/math.md §1).

A weight matrix is oriented as :math:`N \times M` with :math:`N \ge M` and aspect ratio
:math:`q = N / M \ge 1`. Its ESD is the set of eigenvalues of the correlation matrix
:math:`X = W^\top W` in **raw units**, :math:`\lambda_i = s_i(W)^2` (no :math:`1/N`), the
convention of WeightWatcher and the published HT-SR tables; ``normalize=True`` divides by
:math:`N` (the RMT convention). Convolution kernels in canonical layout
``(fan_out, fan_in, k)`` or ``(fan_out, fan_in, kh, kw)`` are ``rf = k`` or ``kh*kw`` slices
``W[:, :, i(, j)]``, each oriented and diagonalised on its own, in one batched call.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Bool, Float

from rmtkit.core import validate

#: scale of convolution spectra: pooled slices times ``CONV_NORM``, unpooled ones times
#: ``rf * CONV_NORM`` (WeightWatcher's ``conv2d_norm``, docs/math.md §1)
CONV_NORM = 0.5


def receptive_field(shape: Sequence[int]) -> int:
    """Number of kernel slices ``rf`` of a canonical weight shape (1 for a dense matrix)."""
    return math.prod(shape[2:])


def oriented_shape(shape: Sequence[int]) -> tuple[int, int]:
    """``(N, M)`` of one slice of a canonical weight shape, with ``N >= M``."""
    return max(shape[0], shape[1]), min(shape[0], shape[1])


def slices(w: ArrayLike) -> Float[Array, "rf n m"]:
    r"""The ``rf`` matrix slices of a canonical weight array, each oriented :math:`N \ge M`.

    ``(fan_out, fan_in)`` gives one slice; ``(fan_out, fan_in, k)`` gives ``k`` slices
    ``W[:, :, i]``; ``(fan_out, fan_in, kh, kw)`` gives ``kh*kw`` slices ``W[:, :, i, j]`` in
    row-major ``(i, j)`` order. Slices are transposed when ``fan_out < fan_in``.
    """
    return oriented_slices(validate.weights(w), jnp)


def canonical_slices(w, xp=jnp):
    """The ``(rf, fan_out, fan_in)`` slices ``W[:, :, i(, j)]`` of a canonical weight array of
    the array module ``xp`` (jnp or np), not oriented; a view where ``xp`` allows."""
    fan_out, fan_in = w.shape[:2]
    return xp.moveaxis(w.reshape(fan_out, fan_in, -1), -1, 0)


def from_canonical_slices(stack, shape, xp=jnp):
    """Inverse of :func:`canonical_slices`: ``(rf, fan_out, fan_in)`` slices back to the
    canonical weight ``shape``."""
    return xp.moveaxis(stack, 0, -1).reshape(shape)


def oriented_slices(w, xp):
    """:func:`slices` for an already validated array of the array module ``xp`` (jnp or np)."""
    stack = canonical_slices(w, xp)
    return stack if w.shape[0] >= w.shape[1] else xp.swapaxes(stack, 1, 2)


def combine_slices(
    evals, *, ndim: int, n_rows: int, normalize: bool, pool: bool, conv_norm: float, xp=jnp
):
    """docs/math.md §1 conventions on per-slice spectra ``(rf, M)``: divide by :math:`N` if
    ``normalize``; a dense layer (``ndim == 2``) is its one slice; a kernel is pooled (all
    slices, sorted, times ``conv_norm``) or kept per slice (times ``rf * conv_norm``)."""
    if normalize:
        evals = evals / n_rows
    if ndim == 2:
        return evals[0]
    if pool:
        return xp.sort(evals.reshape(-1)) * conv_norm
    return evals * (evals.shape[0] * conv_norm)


def gram_eigvals(mats: Float[ArrayLike, "*b n m"]) -> Float[Array, "*b m"]:
    r"""Eigenvalues of :math:`A^\top A` for each :math:`N \times M` matrix ``A``, ascending.

    ``eigvalsh`` of the :math:`M \times M` Gram matrix of the smaller side: cheaper than an SVD
    for :math:`N \ge M` and, in float64, within :math:`\sim 10^{-15}\lambda_{\max}` of
    :math:`s_i^2`. Tiny negative round-off is clipped to 0.
    """
    mats = jnp.asarray(mats)
    gram = jnp.einsum("...ni,...nj->...ij", mats, mats, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.linalg.eigvalsh(gram), 0.0)


def svd_eigvals(mats: Float[ArrayLike, "*b n m"]) -> Float[Array, "*b m"]:
    r"""Squared singular values :math:`s_i^2` of each matrix, ascending.

    Slower than :func:`gram_eigvals` but accurate to :math:`\epsilon\, s_{\max}` in every
    singular value, so tiny ones (rank deficiency, ``matrix_rank``) are resolved; the Gram route
    resolves eigenvalues only down to :math:`\sim\epsilon\,\lambda_{\max}`.
    """
    svals = jnp.linalg.svd(jnp.asarray(mats), compute_uv=False)
    return jnp.flip(svals, axis=-1) ** 2


METHODS = {"gram": gram_eigvals, "svd": svd_eigvals}


def compute_dtype(dtype) -> jnp.dtype:
    """The widest float JAX computes in: float64 when ``jax_enable_x64`` is on, else float32."""
    return jnp.promote_types(dtype, jnp.result_type(float))


def esd(
    w: ArrayLike,
    *,
    normalize: bool = False,
    pool: bool = True,
    conv_norm: float = CONV_NORM,
    dtype=None,
    method: str = "gram",
) -> Float[Array, " m"] | Float[Array, "rf m"]:
    r"""Eigenvalues of the correlation matrix :math:`W^\top W` of one layer (docs/math.md §1).

    .. math:: \lambda_i = s_i(W)^2, \qquad i = 1 \dots M, \qquad \lambda_1 \le \dots \le \lambda_M

    For a convolution kernel with ``rf`` slices (``k`` for conv1d, ``kh*kw`` for conv2d):

    * ``pool=True``: the slice spectra concatenated into one ESD of ``rf*M`` values, sorted,
      times ``conv_norm`` (½, WeightWatcher's ``conv2d_norm``).
    * ``pool=False``: shape ``(rf, M)``, one sorted spectrum per slice, each times
      ``rf * conv_norm``.

    Dense matrices (``rf = 1``) are never rescaled.

    Parameters
    ----------
    w : array, shape (fan_out, fan_in[, k | kh, kw])
        Weights in canonical layout. float16 / bfloat16 / integers are upcast.
    normalize : bool, default False
        Divide by :math:`N` (the larger side of a slice): the eigenvalues of :math:`W^\top W/N`.
    pool : bool, default True
        How convolution slices are combined (above). Ignored for 2-D ``w``.
    conv_norm : float, default 0.5
        Scale of convolution spectra (above).
    dtype : dtype, optional
        Computation and output dtype. Default: float64 when ``jax_enable_x64`` is on, else
        float32. docs/math.md §1 asks agreement with float64 SVD to 1e-5 relative for
        :math:`\lambda \ge 10^{-6}\lambda_{\max}`, which needs float64; float32 is accurate to
        about :math:`10^{-6}\lambda_{\max}` absolute.
    method : {"gram", "svd"}, default "gram"
        "gram": ``eigvalsh`` of the :math:`M \times M` Gram matrix (fastest; eigenvalues accurate
        to :math:`\sim\epsilon\lambda_{\max}` absolute, which meets docs/math.md §1). "svd": squared
        singular values, accurate to :math:`\epsilon s_{\max}` in every singular value: use it
        when the smallest eigenvalues matter (``matrix_rank``/``entropy`` of rank-deficient
        matrices).

    Returns
    -------
    array
        Shape ``(M,)`` for 2-D ``w``, ``(rf*M,)`` pooled, ``(rf, M)`` unpooled; ascending.

    Examples
    --------
    >>> float(rmtkit.esd(jnp.diag(jnp.array([3.0, 4.0]))).max())
    16.0
    """
    w = validate.weights(w)
    validate.choice(method, "method", METHODS)
    dtype = compute_dtype(w.dtype) if dtype is None else jnp.dtype(dtype)
    n_rows, _ = oriented_shape(w.shape)
    evals = METHODS[method](slices(w).astype(dtype))  # (rf, M)
    return combine_slices(
        evals, ndim=w.ndim, n_rows=n_rows, normalize=normalize, pool=pool, conv_norm=conv_norm
    )


# ---------------------------------------------------------------------------------------------
# Ragged spectra: pad + mask into a few bucket lengths so JAX compiles a handful of kernels.

#: smallest bucket length; buckets grow by factors alternating 1.5 and 4/3 (64, 96, 128, 192, ...)
MIN_BUCKET = 64


def bucket_length(n: int, *, min_length: int = MIN_BUCKET) -> int:
    """Smallest bucket length ``>= n`` among ``min_length * {1, 1.5, 2, 3, 4, 6, ...}``.

    Padding wastes at most a third of the length, and a model with layer sizes up to
    :math:`2^{k}` compiles at most about :math:`2 \\log_2(2^k / 64)` kernels per function.
    """
    validate.positive(min_length, "min_length", integer=True)
    validate.positive(n, "n", integer=True, allow_zero=True)
    length = min_length
    while length < n:
        grown = length * 3 // 2 if length & (length - 1) == 0 else length * 4 // 3
        length = max(grown, length + 1)  # min_length 1: 1 * 3 // 2 == 1 would never grow
    return length


def _host_spectrum(s: ArrayLike, i: int) -> np.ndarray:
    """Spectrum ``i`` of :func:`pad_spectra` as a flat numpy array of real numbers."""
    try:
        a = np.asarray(s)
    except (TypeError, ValueError) as err:
        raise validate.InvalidWeightsError(
            f"`spectra[{i}]` must be an array of real numbers ({err})."
        ) from err
    if a.dtype.kind not in "biuf" and not validate.is_real_dtype(a.dtype):
        raise validate.InvalidWeightsError(
            f"`spectra[{i}]` must hold real numbers, got dtype {a.dtype}."
        )
    return a.reshape(-1)


def pad_spectra(
    spectra: Sequence[ArrayLike], *, length: int | None = None, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged 1-D spectra into ``(B, L)`` with a ``(B, L)`` validity mask.

    ``L = bucket_length(max size)`` unless ``length`` is given. Padding holds ``fill``
    (ignored by every masked estimator) and ``mask`` is ``False`` there.

    Returns numpy arrays (host-side bookkeeping; JAX receives them as one batched input).
    """
    arrays = [_host_spectrum(s, i) for i, s in enumerate(spectra)]
    longest = max((a.size for a in arrays), default=0)
    if length is None:
        length = bucket_length(longest)
    validate.positive(length, "length", integer=True, allow_zero=True)
    if length < longest:
        raise validate.InvalidArgumentError(
            f"`length`={length} is shorter than the longest spectrum ({longest})."
        )
    dtype = np.result_type(*arrays) if arrays else np.float64
    out = np.full((len(arrays), length), fill, dtype=dtype)
    valid = np.zeros((len(arrays), length), dtype=bool)
    for row, a in enumerate(arrays):
        out[row, : a.size] = a
        valid[row, : a.size] = True
    return out, valid


def masked(spectrum: ArrayLike, mask: Bool[ArrayLike, " n"] | None = None):
    """Validated ``(spectrum, mask)`` pair: the common entry of every masked estimator."""
    x = validate.spectrum(spectrum)
    return x, validate.mask(mask, like=x)
