r"""Singular values of a 2-D convolution operator by the FFT of its kernel (docs/math.md §11.3).

A convolution layer with kernel :math:`K` of shape ``(fan_out, fan_in, kh, kw)`` maps an input
of ``fan_in`` channels on an :math:`n \times n` grid to ``fan_out`` channels. With periodic
boundaries it is a linear operator of size :math:`(\text{fan\_out}\, n^2) \times
(\text{fan\_in}\, n^2)`, block-circulant, so the 2-D discrete Fourier transform
block-diagonalises it (Sedghi, Gupta & Long, ICLR 2019): its singular values are those of the
:math:`n^2` complex matrices

.. math:: P(u, v) = \sum_{i, j} K[:, :, i, j]\, e^{-2\pi \mathrm i (u i + v j)/n}
          \in \mathbb C^{\text{fan\_out} \times \text{fan\_in}}, \qquad 0 \le u, v < n,

i.e. :math:`n^2 \min(\text{fan\_out}, \text{fan\_in})` values (``numpy.fft.fft2`` of the
kernel zero-padded to :math:`n \times n`). WeightWatcher's ``conv2d_fft`` uses the grid
:math:`n = 32`; it then keeps only the real part of :math:`P` and takes singular values over the
wrong axes (the frequency grid of each channel pair), which is not the operator's spectrum
(docs/math.md §9).
"""

import functools

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Float

from rmtkit.core import validate
from rmtkit.core.esd import compute_dtype

__all__ = ["FFT_GRID", "conv2d_fft_esd", "conv2d_fft_svals"]

#: the input grid of WeightWatcher's ``conv2d_fft`` (n x n)
FFT_GRID = 32


def _check(w: ArrayLike, n: int) -> Array:
    w = validate.weights(w)
    if w.ndim != 4:
        raise validate.InvalidWeightsError(
            f"`W` must be a conv2d kernel (fan_out, fan_in, kh, kw), got shape {w.shape}."
        )
    validate.positive(n, "n", integer=True)
    if max(w.shape[2:]) > n:
        raise validate.InvalidArgumentError(
            f"the grid n={n} is smaller than the kernel {w.shape[2:]}: take n >= kh, kw."
        )
    return w


def conv2d_fft_svals(
    w: Float[ArrayLike, "fan_out fan_in kh kw"], *, n: int = FFT_GRID
) -> Float[Array, " k"]:
    r"""Singular values of the periodic 2-D convolution operator of kernel ``w`` on an
    :math:`n \times n` grid (module docstring), ascending; :math:`n^2 \min(\text{fan\_out},
    \text{fan\_in})` values (all NaN when ``w`` holds NaN or Inf).

    Examples
    --------
    >>> k = jnp.zeros((1, 1, 3, 3)).at[0, 0, 1, 1].set(2.0)  # 2 x identity (a shift)
    >>> rmtkit.conv2d_fft_svals(k, n=4).tolist() == [2.0] * 16
    True
    """
    w = _check(w, n)
    return _svals(w.astype(compute_dtype(w.dtype)), n)


@functools.partial(jax.jit, static_argnames=("n",))
def _svals(w, n):
    finite = jnp.all(jnp.isfinite(w))  # NaN / Inf: zeros in (LAPACK may not return), NaN out
    p = jnp.fft.fft2(jnp.where(finite, w, 0.0), s=(n, n), axes=(2, 3))  # (fan_out, fan_in, n, n)
    blocks = jnp.moveaxis(p, (2, 3), (0, 1)).reshape(n * n, w.shape[0], w.shape[1])
    s = jnp.linalg.svd(blocks, compute_uv=False)
    return jnp.where(finite, jnp.sort(s.reshape(-1)), jnp.nan).astype(w.dtype)


def conv2d_fft_esd(
    w: Float[ArrayLike, "fan_out fan_in kh kw"], *, n: int = FFT_GRID
) -> Float[Array, " k"]:
    r"""Eigenvalues :math:`\lambda = s^2` of :math:`T^\top T` for the convolution operator
    :math:`T` of kernel ``w`` (:func:`conv2d_fft_svals`), ascending: the ESD ``analyze``
    fits with ``conv2d_fft=True`` (raw units, no ``conv_norm``)."""
    s = conv2d_fft_svals(w, n=n)
    return s * s
