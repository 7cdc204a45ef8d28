r"""SVD sharpening and smoothing of weights, and the detX tail size (docs/math.md §7, §8).

A weight slice is :math:`N \times M` with :math:`N \ge M`, :math:`q = N / M`; its singular
value decomposition :math:`W = \sum_i s_i u_i v_i^\top` gives the eigenvalues
:math:`\lambda_i = s_i^2` of :math:`W^\top W` (raw units, as `rmtkit.esd`). Convolution kernels
``(fan_out, fan_in[, k | kh, kw])`` are processed per slice ``W[:, :, i(, j)]`` and reassembled in
the same layout; biases are not touched (they are not passed here).
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Bool, Float, Int

from rmtkit.core import validate
from rmtkit.core.esd import (
    canonical_slices,
    compute_dtype,
    from_canonical_slices,
    masked,
    oriented_shape,
)
from rmtkit.core.mp import MARGINS, mp_fit
from rmtkit.errors import InvalidArgumentError

#: how :func:`svd_sharpen` removes a trap: zero its component, or clip it to the bulk edge
SHARPEN_MODES = ("zero", "clip")
#: how :func:`svd_smooth` chooses the number of components it keeps
SMOOTH_METHODS = ("detX", "alpha_min", "rmt", "percent")


class DetX(NamedTuple):
    """Result of `detx`: tail size, the eigenvalue where the tail ends, validity flag."""

    detX_num: Int[Array, ""]
    detX_val: Float[Array, ""]
    ok: Bool[Array, ""]


def detx(evals: Float[ArrayLike, " n"], mask: Bool[ArrayLike, " n"] | None = None) -> DetX:
    r"""The detX (ERG) tail: the largest eigenvalues whose product, at mean 1, stays :math:`\ge 1`.

    Rescale to mean 1, :math:`t_i = n\lambda_i / \sum_j \lambda_j`, sort descending
    :math:`t_{[1]} \ge t_{[2]} \ge \dots`, and find the first :math:`k` with

    .. math:: \prod_{i=1}^{k} t_{[i]} < 1 \iff \sum_{i=1}^{k} \ln t_{[i]} < 0 .

    ``detX_num`` = :math:`k` (the tail size, the eigenvalue that tips the product below 1
    included), ``detX_val`` = :math:`\lambda_{[k]}` (input units). When the product never
    drops below 1 (all eigenvalues equal) the whole spectrum is the tail.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one matrix, any order.
    mask : bool array, shape (n,), optional
        ``False`` marks padding. Default: all ``True``.

    Returns
    -------
    DetX
        ``detX_num`` (int), ``detX_val``, ``ok`` (False, with NaN and 0, for an empty or
        all-zero spectrum).

    References
    ----------
    .. [1] Martin, Mahoney, "Heavy-Tailed Universality Predicts Trends in Test Accuracies",
       WeightWatcher 0.7.7 ``detX_constraint`` (the "exact renormalization group" condition).

    Examples
    --------
    >>> r = rmtkit.detx(jnp.array([0.25, 0.5, 1.0, 2.25]))  # products 2.25, 2.25, 1.125, 0.28
    >>> int(r.detX_num), float(r.detX_val)
    (4, 0.25)
    """
    x, valid = masked(evals, mask)
    return _detx(x, valid)


@jax.jit
def _detx(x, valid) -> DetX:
    n = jnp.sum(valid)
    total = jnp.sum(jnp.where(valid, x, 0.0))
    ok = (n > 0) & (total > 0) & jnp.isfinite(total)
    desc = -jnp.sort(jnp.where(valid, -x, jnp.inf))  # descending, padding (-inf) last
    in_spec = jnp.arange(x.shape[0]) < n
    t = desc * n.astype(x.dtype) / jnp.where(ok, total, 1.0)
    pos = in_spec & (t > 0)
    logs = jnp.where(pos, jnp.log(jnp.where(pos, t, 1.0)), -jnp.inf)
    logs = jnp.where(in_spec, logs, 0.0)
    below = in_spec & (jnp.cumsum(logs) < 0)
    k = jnp.where(jnp.any(below), jnp.argmax(below) + 1, n)
    val = desc[jnp.clip(k - 1, 0, x.shape[0] - 1)]
    return DetX(
        detX_num=jnp.where(ok, k, 0).astype(jnp.int32),
        detX_val=jnp.where(ok, val, jnp.nan),
        ok=ok,
    )


def _svd_slices(w: Array, dtype):
    """SVD of every slice. A slice with a NaN / infinite entry is decomposed as zeros and its
    singular values set to NaN, so the result is NaN there: LAPACK's ``gesdd`` with vectors
    never returns on some such inputs (found by tests/core/test_fuzz_math.py)."""
    stack = canonical_slices(w).astype(dtype)
    finite = jnp.all(jnp.isfinite(stack), axis=(1, 2))
    u, s, vh = jnp.linalg.svd(jnp.where(finite[:, None, None], stack, 0.0), full_matrices=False)
    return stack, u, jnp.where(finite[:, None], s, jnp.nan), vh


def svd_sharpen(
    w: Float[ArrayLike, "fan_out fan_in *k"],
    num_traps: int | Int[ArrayLike, ""] | Int[ArrayLike, " rf"],
    *,
    mode: str = "zero",
    margin: str = "ww",
) -> Float[Array, "fan_out fan_in *k"]:
    r"""Remove correlation traps: zero (or clip) the top singular components (docs/math.md §7).

    ``mode="zero"`` (WeightWatcher ``SVDSharpness``): :math:`W \leftarrow W - \sum_{i \le k}
    s_i u_i v_i^\top` for the ``num_traps`` = :math:`k` largest singular values.
    ``mode="clip"``: those :math:`s_i` are shrunk to the MP bulk edge
    :math:`\sqrt{\lambda_+}` of their slice (`rmtkit.mp_fit` of the slice's spectrum,
    ``bulk_max``), never raised. A scalar ``num_traps`` counts components over the pooled
    spectrum of all convolution slices (the largest :math:`k` singular values of the layer,
    wherever they are); an array of shape ``(rf,)`` gives one count per slice. ``num_traps
    <= 0`` returns ``W`` unchanged, and so does a failed MP fit in ``"clip"`` mode
    (WeightWatcher truncates the layer to rank 1 there: a bug, docs/math.md §9). The top singular
    value never increases.

    Parameters
    ----------
    w : array, shape (fan_out, fan_in[, k | kh, kw])
        Weights in canonical layout.
    num_traps : int or int array, shape () or (rf,)
        Number of components to remove (e.g. ``correlation_traps(W, key).num_traps``).
    mode : {"zero", "clip"}, default "zero"
    margin : {"ww", "tw95"}, default "ww"
        Unused by the edge itself (``bulk_max``); passed to the MP fit.

    Returns
    -------
    array
        Sharpened weights, same shape and dtype as ``w``. A slice holding NaN or infinite
        entries is NaN where it would change (and returned as is where it would not).

    Examples
    --------
    >>> W = jnp.diag(jnp.array([5.0, 2.0, 1.0]))
    >>> rmtkit.svd_sharpen(W, 1).diagonal().tolist()
    [0.0, 2.0, 1.0]
    """
    w = validate.weights(w)
    validate.choice(mode, "mode", SHARPEN_MODES)
    validate.choice(margin, "margin", MARGINS)
    num_traps = jnp.asarray(num_traps)
    if not jnp.issubdtype(num_traps.dtype, jnp.integer):
        raise InvalidArgumentError(
            f"`num_traps` must be an integer count, got dtype {num_traps.dtype}."
        )
    rf = w[0, 0].size
    if num_traps.ndim not in (0, 1) or (num_traps.ndim == 1 and num_traps.shape != (rf,)):
        raise InvalidArgumentError(
            f"`num_traps` must be a scalar or have shape ({rf},) (one count per slice), "
            f"got shape {num_traps.shape}."
        )
    return _sharpen(w, num_traps, mode, margin)


@partial(jax.jit, static_argnames=("mode", "margin"))
def _sharpen(w, num_traps, mode, margin):
    dtype = compute_dtype(w.dtype)
    stack, u, s, vh = _svd_slices(w, dtype)
    rf, k = s.shape
    if num_traps.ndim == 0:
        # rank of each singular value among all slices (0 = largest)
        flat = s.reshape(-1)
        rank = jnp.argsort(jnp.argsort(-flat)).reshape(rf, k)
        chosen = rank < num_traps
    else:
        chosen = jnp.arange(k)[None, :] < num_traps[:, None]
    if mode == "zero":
        new_s = jnp.where(chosen, 0.0, s)
        ok = jnp.ones((rf,), bool)
    else:
        n_rows, n_cols = oriented_shape(w.shape)
        fits = jax.vmap(lambda sv: mp_fit(sv * sv, Q=n_rows / n_cols, margin=margin))(s)
        edge = jnp.sqrt(jnp.where(fits.ok, fits.bulk_max, 0.0))
        new_s = jnp.where(chosen, jnp.minimum(s, edge[:, None]), s)
        ok = fits.ok
    changed = jnp.any(chosen, axis=1) & ok  # (rf,)
    rebuilt = jnp.einsum("rik,rk,rkj->rij", u, new_s, vh, precision=jax.lax.Precision.HIGHEST)
    out = jnp.where(changed[:, None, None], rebuilt, stack)
    return from_canonical_slices(out, w.shape).astype(w.dtype)


def _pl_tail_size(evals: Array) -> Array:
    """``num_pl_spikes`` of the docs/math.md §2 power-law search (tail size at the KS-best xmin)."""
    from rmtkit.core.powerlaw import fit_pl

    return fit_pl(evals).num_pl_spikes


def svd_smooth(
    w: Float[ArrayLike, "fan_out fan_in *k"],
    k: int | Int[ArrayLike, ""] | None = None,
    *,
    method: str | None = None,
    percent: float = 0.2,
    margin: str = "ww",
) -> Float[Array, "fan_out fan_in *k"]:
    r"""Keep (or drop) the top singular components of every slice (docs/math.md §7).

    :math:`W \leftarrow \sum_{i \le k} s_i u_i v_i^\top` for ``k > 0`` (keep the top
    :math:`k`); :math:`W \leftarrow W - \sum_{i \le |k|} s_i u_i v_i^\top` for ``k < 0`` (drop
    the top :math:`|k|`); ``k = 0`` leaves ``W`` unchanged. Give ``k`` or ``method``, which
    chooses :math:`k > 0` from each slice's own spectrum :math:`s_i^2`:

    * ``"detX"``: ``detX_num`` of `detx`;
    * ``"alpha_min"``: the power-law tail size ``num_pl_spikes`` (docs/math.md §2 search);
    * ``"rmt"``: ``num_spikes`` of `rmtkit.mp_fit` (``margin``);
    * ``"percent"``: :math:`\mathrm{round}(` ``percent`` :math:`\cdot M)`.

    Parameters
    ----------
    w : array, shape (fan_out, fan_in[, k | kh, kw])
        Weights in canonical layout.
    k : int, optional
        Components to keep (> 0) or drop (< 0), the same for every slice.
    method : {"detX", "alpha_min", "rmt", "percent"}, optional
    percent : float in (0, 1], default 0.2
    margin : {"ww", "tw95"}, default "ww"

    Returns
    -------
    array
        Smoothed weights, same shape and dtype as ``w``. A slice holding NaN or infinite
        entries is NaN where it would change (and returned as is where it would not).

    Examples
    --------
    >>> W = jnp.diag(jnp.array([5.0, 2.0, 1.0]))
    >>> rmtkit.svd_smooth(W, 2).diagonal().tolist(), rmtkit.svd_smooth(W, -2).diagonal().tolist()
    ([5.0, 2.0, 0.0], [0.0, 0.0, 1.0])
    """
    w = validate.weights(w)
    if (k is None) == (method is None):
        raise InvalidArgumentError("Give exactly one of `k` and `method` to `svd_smooth`.")
    if method is not None:
        validate.choice(method, "method", SMOOTH_METHODS)
    validate.choice(margin, "margin", MARGINS)
    if not (isinstance(percent, int | float) and 0.0 < percent <= 1.0):
        raise InvalidArgumentError(f"`percent` must be in (0, 1]; got {percent!r}.")
    if k is not None:
        k = jnp.asarray(k)
        if not jnp.issubdtype(k.dtype, jnp.integer) or k.ndim != 0:
            raise InvalidArgumentError(
                f"`k` must be an integer scalar, got dtype {k.dtype} and shape {k.shape}."
            )
    return _smooth(w, k, method, float(percent), margin)


@partial(jax.jit, static_argnames=("method", "percent", "margin"))
def _smooth(w, k, method, percent, margin):
    dtype = compute_dtype(w.dtype)
    stack, u, s, vh = _svd_slices(w, dtype)
    rf, m = s.shape
    n_rows, n_cols = oriented_shape(w.shape)
    evals = jnp.sort(s * s, axis=1)  # ascending per slice
    if method is None:
        kk = jnp.broadcast_to(k, (rf,))
    elif method == "detX":
        kk = jax.vmap(lambda e: detx(e).detX_num)(evals)
    elif method == "rmt":
        kk = jax.vmap(lambda e: mp_fit(e, Q=n_rows / n_cols, margin=margin).num_spikes)(evals)
    elif method == "alpha_min":
        kk = jax.vmap(_pl_tail_size)(evals)
    else:
        kk = jnp.full((rf,), max(1, round(percent * m)), jnp.int32)
    idx = jnp.arange(m)[None, :]
    kk = kk[:, None]
    keep = jnp.where(kk > 0, idx < kk, jnp.where(kk < 0, idx >= -kk, True))
    new_s = jnp.where(keep, s, 0.0)
    rebuilt = jnp.einsum("rik,rk,rkj->rij", u, new_s, vh, precision=jax.lax.Precision.HIGHEST)
    out = jnp.where((kk == 0)[:, :, None], stack, rebuilt)
    return from_canonical_slices(out, w.shape).astype(w.dtype)
