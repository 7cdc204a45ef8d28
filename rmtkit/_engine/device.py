r"""Device (GPU) spectra of whole layers: the accelerator route of the model-level analysis.

When JAX sees a GPU (or ``$RMTKIT_DEVICE_SPECTRA=1``), :func:`rmtkit.analyze` computes each
layer's eigenvalues on the device: the ``rf`` oriented slices of a layer go up as one array,
their Gram matrices :math:`A^\top A` (float32, ``Precision.HIGHEST``: no TF32) and ``eigvalsh``
run as one batched, jitted call (one compile per slice shape), and the fits then run on the
device too, batched by bucket (:mod:`rmtkit._engine.kernels`).

Float64 where the numerics need it. A float32 Gram eigensolve has absolute error
:math:`\sim M\epsilon_{32}\lambda_{\max}` (:math:`\epsilon_{32} = 1.2\times10^{-7}`): the tail
the power law is fitted to (near :math:`\lambda_{\max}`), ``lambda_max``, the norms and the
stable rank are resolved; the eigenvalues near zero, which decide ``matrix_rank``,
``rank_loss`` and ``weak_rank_loss``, are not when the slice is (nearly) rank-deficient. So a
slice whose smallest float32 eigenvalue is below :data:`RESOLVE` :math:`\cdot M\epsilon_{32}
\lambda_{\max}` is recomputed in float64 on the device, and by the host's SVD where even that
does not resolve it (:func:`rmtkit._engine.host.gram_resolved`, the host's own test).
Well-conditioned slices (e.g. rectangular layers, :math:`Q \gtrsim 2`) stay float32 throughout.

Agreement with the float64 host route is tested on the CPU backend (the route can be forced):
alpha, ``lambda_max``, norms to float32 precision; the rank metrics exactly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rmtkit._engine.host import gram_resolved, svd_evals
from rmtkit.core.esd import CONV_NORM, combine_slices, oriented_slices

__all__ = ["RESOLVE", "device_esd"]

#: float32 slices with :math:`\lambda_{\min} <` RESOLVE :math:`\cdot M\epsilon_{32}\lambda_{\max}`
#: are recomputed in float64
RESOLVE = 4.0


@functools.partial(jax.jit, static_argnames=("dtype",))
def _gram_eigvalsh(stack, dtype):
    """Ascending eigenvalues of each slice's Gram matrix ``(rf, N, M) -> (rf, M)``."""
    a = stack.astype(dtype)
    gram = jnp.einsum("rni,rnj->rij", a, a, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.linalg.eigvalsh(gram), 0.0)


def _unresolved(evals: np.ndarray, eps: float) -> np.ndarray:
    """Slices whose smallest eigenvalue is below the float resolution of their Gram solve."""
    n_cols = evals.shape[1]
    return evals[:, 0] < RESOLVE * n_cols * eps * evals[:, -1]


def device_esd(
    w: np.ndarray, *, normalize: bool = False, pool: bool = True, conv_norm: float = CONV_NORM
) -> np.ndarray:
    """Eigenvalues of one layer, computed on the default JAX device (float32 first).

    Same conventions and shapes as :func:`rmtkit._engine.host.host_esd` (returned as float64
    numpy); see the module docstring for the precision policy.
    """
    w = np.asarray(w)
    stack = np.ascontiguousarray(oriented_slices(w, np))  # (rf, N, M)
    _, n_rows, _ = stack.shape
    on_device = jax.device_put(stack)
    evals = np.asarray(_gram_eigvalsh(on_device, jnp.float32), dtype=np.float64)
    redo = _unresolved(evals, float(np.finfo(np.float32).eps))
    if redo.any():
        with jax.enable_x64(True):
            evals[redo] = np.asarray(_gram_eigvalsh(on_device[np.flatnonzero(redo)], jnp.float64))
        still = redo & ~gram_resolved(evals)
        for i in np.flatnonzero(still):  # rank-deficient even in float64: SVD values (as host)
            evals[i] = svd_evals(stack[i])
    return combine_slices(
        np.sort(evals, axis=1),
        ndim=w.ndim,
        n_rows=n_rows,
        normalize=normalize,
        pool=pool,
        conv_norm=conv_norm,
        xp=np,
    )
