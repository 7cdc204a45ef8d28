r"""Randomization of weights, randomized-spectrum distances and correlation traps (docs/math.md §6).

A weight matrix is :math:`N \times M` with :math:`N \ge M`, :math:`q = N / M` (``Q``).
Randomizing a layer permutes its entries uniformly at random (within each convolution slice
``W[:, :, i, j]``), which destroys every correlation but keeps the entry distribution and the
Frobenius norm. The randomized ESD of a well-trained layer is close to Marchenko–Pastur; large
entries survive randomization as *correlation traps*: randomized eigenvalues above the MP bulk.
Unlike WeightWatcher (unseeded), every function takes an explicit ``jax.random`` key.
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
    CONV_NORM,
    canonical_slices,
    compute_dtype,
    from_canonical_slices,
    masked,
    oriented_shape,
    receptive_field,
)
from rmtkit.core.mp import MARGINS, mp_fit
from rmtkit.errors import InvalidWeightsError


def _permutations(key: Array, rf: int, size: int) -> Int[Array, "rf size"]:
    keys = jax.random.split(key, rf)
    return jax.vmap(lambda k: jax.random.permutation(k, size))(keys)


def randomize(
    w: Float[ArrayLike, "fan_out fan_in *k"], key: Array
) -> Float[Array, "fan_out fan_in *k"]:
    r"""Permute the entries of a weight array uniformly at random, per convolution slice.

    Dense ``(fan_out, fan_in)``: one permutation of all :math:`NM` entries. Conv kernels
    ``(fan_out, fan_in, k)`` / ``(fan_out, fan_in, kh, kw)``: an independent permutation
    within each slice ``W[:, :, i(, j)]`` (docs/math.md §6). The multiset of entries of every slice,
    hence the Frobenius norm, is preserved; the same key gives the same result.

    Parameters
    ----------
    w : array, shape (fan_out, fan_in[, k | kh, kw])
        Weights in canonical layout.
    key : jax.random key
        Randomness (``jax.random.key(seed)``).

    Returns
    -------
    array
        Same shape and dtype as ``w``.

    Examples
    --------
    >>> W = jnp.arange(6.0).reshape(2, 3)
    >>> sorted(rmtkit.randomize(W, jax.random.key(0)).ravel().tolist())
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    return _randomize(validate.weights(w), validate.key(key))


@jax.jit
def _randomize(w, key):
    stack = canonical_slices(w)
    rf, fan_out, fan_in = stack.shape
    perm = _permutations(key, rf, fan_out * fan_in)
    flat = stack.reshape(rf, -1)
    shuffled = jnp.take_along_axis(flat, perm, axis=1)
    return from_canonical_slices(shuffled.reshape(stack.shape), w.shape)


def _js(p, q, valid):
    """Jensen–Shannon distance of two (masked) probability vectors, natural log."""
    m = 0.5 * (p + q)

    def kl(a):
        pos = valid & (a > 0)
        ratio = jnp.where(pos, a / jnp.where(pos, m, 1.0), 1.0)  # double where
        return jnp.sum(jnp.where(pos, a * jnp.log(ratio), 0.0))

    return jnp.sqrt(jnp.maximum(0.5 * kl(p) + 0.5 * kl(q), 0.0))


def rand_distance(
    evals: Float[ArrayLike, " n"],
    rand_evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    method: str = "ww",
    bins: int = 100,
) -> Float[Array, ""]:
    r"""Jensen–Shannon distance between a spectrum and its randomized spectrum (docs/math.md §6).

    ``method="ww"`` (default, WeightWatcher-compatible): both spectra sorted and normalised
    to sum 1, compared rank by rank (no histogram):

    .. math:: \mathrm{JS}(p, r) = \sqrt{\tfrac12 \mathrm{KL}(p\,\|\,m) + \tfrac12
              \mathrm{KL}(r\,\|\,m)}, \qquad m = (p + r)/2, \qquad
              p_i = \lambda_{(i)} / \textstyle\sum_j \lambda_j

    (natural log, so :math:`0 \le \mathrm{JS} \le \sqrt{\ln 2}`). ``method="hist"``: the
    same distance between the histograms of both spectra on ``bins`` shared log-spaced bins
    spanning their positive values.

    Parameters
    ----------
    evals, rand_evals : array, shape (n,)
        Original and randomized eigenvalues (any order, same length).
    mask : bool array, shape (n,), optional
        Valid entries of **both** arrays (the randomized spectrum of a layer has as many
        values as the original). Default: all ``True``.
    method : {"ww", "hist"}, default "ww"
    bins : int, default 100
        Number of bins for ``method="hist"``.

    Returns
    -------
    0-d array
        The distance; NaN when either spectrum has no positive mass.

    References
    ----------
    .. [1] Martin, Mahoney, "Implicit self-regularization in deep neural networks",
       JMLR 22 (2021) 165; WeightWatcher 0.7.7 ``rand_distance``.

    Examples
    --------
    >>> float(rmtkit.rand_distance(jnp.array([1.0, 2.0]), jnp.array([2.0, 1.0])))
    0.0
    """
    x, valid = masked(evals, mask)
    r = validate.spectrum(rand_evals, "rand_evals")
    if r.shape != x.shape:
        raise InvalidWeightsError(
            f"`rand_evals` must have the shape of `evals` {x.shape}, got {r.shape}; "
            "randomize the same layer (one replica) to get matching spectra."
        )
    validate.choice(method, "method", ("ww", "hist"))
    validate.positive(bins, "bins", integer=True)
    return _rand_distance(x, r, valid, method, bins)


@partial(jax.jit, static_argnames=("method", "bins"))
def _rand_distance(x, r, valid, method, bins):
    dtype = jnp.promote_types(x.dtype, r.dtype)
    x, r = x.astype(dtype), r.astype(dtype)
    if method == "ww":
        xs = jnp.sort(jnp.where(valid, x, jnp.inf))  # same number of valid values in both
        rs = jnp.sort(jnp.where(valid, r, jnp.inf))
        ok_rank = jnp.arange(x.shape[0]) < jnp.sum(valid)  # valid values sort first
        xs = jnp.where(ok_rank, xs, 0.0)
        rs = jnp.where(ok_rank, rs, 0.0)
        sx, sr = jnp.sum(xs), jnp.sum(rs)
        ok = (sx > 0) & (sr > 0) & jnp.isfinite(sx) & jnp.isfinite(sr)
        p = xs / jnp.where(ok, sx, 1.0)
        q = rs / jnp.where(ok, sr, 1.0)
        return jnp.where(ok, _js(p, q, ok_rank), jnp.nan)
    pos_x = valid & (x > 0)
    pos_r = valid & (r > 0)
    lo = jnp.minimum(jnp.min(jnp.where(pos_x, x, jnp.inf)), jnp.min(jnp.where(pos_r, r, jnp.inf)))
    hi = jnp.maximum(jnp.max(jnp.where(pos_x, x, -jnp.inf)), jnp.max(jnp.where(pos_r, r, -jnp.inf)))
    ok = jnp.isfinite(lo) & jnp.isfinite(hi) & jnp.any(pos_x) & jnp.any(pos_r)
    llo = jnp.log(jnp.where(ok, lo, 1.0))
    lhi = jnp.log(jnp.where(ok, hi, 1.0))
    width = jnp.where(lhi > llo, lhi - llo, 1.0)

    def hist(v, pos):
        lv = jnp.log(jnp.where(pos, v, 1.0))
        idx = jnp.clip(jnp.floor((lv - llo) / width * bins).astype(jnp.int32), 0, bins - 1)
        counts = jnp.zeros(bins, dtype).at[idx].add(jnp.where(pos, 1.0, 0.0))
        return counts / jnp.maximum(jnp.sum(counts), 1.0)

    all_bins = jnp.ones(bins, dtype=bool)
    return jnp.where(ok, _js(hist(x, pos_x), hist(r, pos_r), all_bins), jnp.nan)


class TrapStats(NamedTuple):
    """Result of `correlation_traps` (docs/math.md §6). Array fields, stackable under ``jax.vmap``.

    ``trap_index`` has shape ``(max_traps, w.ndim)``: row ``k`` is the index into ``W`` of the
    entry that contributes most to the ``k``-th largest randomized eigenvalue, for
    ``k < num_traps``; other rows are ``-1``.
    """

    max_rand_eval: Float[Array, ""]
    ww_softrank: Float[Array, ""]
    ww_maxdist: Float[Array, ""]
    num_traps: Int[Array, ""]
    rand_sigma_mp: Float[Array, ""]
    rand_mp_softrank: Float[Array, ""]
    rand_bulk_max: Float[Array, ""]
    rand_distance: Float[Array, ""]
    trap_index: Int[Array, "t d"]
    ok: Bool[Array, ""]


def correlation_traps(
    w: Float[ArrayLike, "fan_out fan_in *k"],
    key: Array,
    *,
    replicas: int | None = None,
    margin: str = "ww",
    max_traps: int = 4,
    normalize: bool = False,
    conv_norm: float = CONV_NORM,
    dtype=None,
) -> TrapStats:
    r"""Randomized-spectrum metrics and correlation traps of one layer (docs/math.md §6).

    ``W`` is randomized (`randomize`, per convolution slice) and both spectra are computed in
    the units of `rmtkit.esd` (raw; pooled conv spectra times ``conv_norm``). Then

    * ``max_rand_eval``: the largest randomized eigenvalue over ``replicas`` randomizations
      (default: 5 when the layer has fewer than 100 eigenvalues, else 1, as WeightWatcher);
      ``ww_softrank`` = ``max_rand_eval`` / :math:`\lambda_{\max}`;
      ``ww_maxdist`` = :math:`\lambda_{\max}` − ``max_rand_eval``;
    * the randomized spectrum of the first replica is MP-fitted (`rmtkit.mp_fit` with the
      slice's :math:`q` and :math:`M`, ``margin``): ``num_traps`` (WeightWatcher's
      ``rand_num_spikes``) = its spikes, ``rand_sigma_mp``, ``rand_mp_softrank``,
      ``rand_bulk_max``; ``rand_distance`` (`rand_distance`, ``method="ww"``) compares it
      with the original spectrum;
    * ``trap_index``: for each of the ``num_traps`` largest randomized singular triplets
      :math:`(u, s, v)` of slice :math:`\tilde W`, the entry :math:`(a, b)` maximising
      :math:`|u_a \tilde W_{ab} v_b|` (the summands of :math:`s = u^\top \tilde W v`), mapped
      back through the permutation to its index in ``W`` (with the kernel position for conv).

    Parameters
    ----------
    w : array, shape (fan_out, fan_in[, k | kh, kw])
        Weights in canonical layout.
    key : jax.random key
        Randomness; replica ``i`` uses ``jax.random.split(key, replicas)[i]``.
    replicas : int, optional
        Number of randomizations for ``max_rand_eval`` (default above).
    margin : {"ww", "tw95"}, default "ww"
        MP spike margin (`rmtkit.mp_fit`).
    max_traps : int, default 4
        Rows of ``trap_index`` (traps beyond it are counted, not located).
    normalize, conv_norm, dtype
        As in `rmtkit.esd`.

    Returns
    -------
    TrapStats

    References
    ----------
    .. [1] Martin, Mahoney, "Implicit self-regularization in deep neural networks",
       JMLR 22 (2021) 165; WeightWatcher 0.7.7 ``randomize=True``.

    Examples
    --------
    >>> W = jax.random.normal(jax.random.key(0), (300, 200)).at[7, 11].set(100.0)
    >>> stats = rmtkit.correlation_traps(W, jax.random.key(1))
    >>> int(stats.num_traps), stats.trap_index[0].tolist()
    (1, [7, 11])
    """
    w = validate.weights(w)
    key = validate.key(key)
    validate.choice(margin, "margin", MARGINS)
    validate.positive(max_traps, "max_traps", integer=True)
    dtype = compute_dtype(w.dtype) if dtype is None else jnp.dtype(dtype)
    n_rows, n_cols = oriented_shape(w.shape)
    rf = receptive_field(w.shape)
    k = min(w.shape[0], w.shape[1])
    if replicas is None:
        replicas = 5 if rf * k < 100 else 1
    validate.positive(replicas, "replicas", integer=True)
    scale = (1.0 / n_rows if normalize else 1.0) * (conv_norm if rf > 1 else 1.0)
    return _traps(w, key, replicas, margin, max_traps, float(scale), dtype)


@partial(jax.jit, static_argnames=("replicas", "margin", "max_traps", "scale", "dtype"))
def _traps(w, key, replicas, margin, max_traps, scale, dtype) -> TrapStats:
    n_rows, n_cols = oriented_shape(w.shape)
    rf = receptive_field(w.shape)
    k = min(w.shape[0], w.shape[1])

    stack = canonical_slices(w).astype(dtype)  # (rf, fan_out, fan_in)
    _, fan_out, fan_in = stack.shape
    flat = stack.reshape(rf, -1)
    keys = jax.random.split(key, replicas)

    def one(rkey):
        perm = _permutations(rkey, rf, fan_out * fan_in)
        shuffled = jnp.take_along_axis(flat, perm, axis=1).reshape(stack.shape)
        return perm, shuffled

    perms, shuffled = jax.vmap(one)(keys)  # (R, rf, fo*fi), (R, rf, fo, fi)
    # Gram matrices of the smaller side: eigh is much faster than an SVD on CPU
    tall = fan_out >= fan_in

    def gram(a):
        spec = "...ni,...nj->...ij" if tall else "...in,...jn->...ij"
        return jnp.einsum(spec, a, a, precision=jax.lax.Precision.HIGHEST)

    max_rand_eval = jnp.max(jnp.linalg.eigvalsh(gram(shuffled[1:]))) if replicas > 1 else None
    lam0, vecs = jnp.linalg.eigh(gram(shuffled[0]))  # replica 0: (rf, k), (rf, k, k)
    lam0 = jnp.maximum(lam0, 0.0)
    top0 = jnp.max(lam0)
    max_rand_eval = top0 if max_rand_eval is None else jnp.maximum(top0, max_rand_eval)
    max_rand_eval = max_rand_eval * scale
    rand_evals = jnp.sort(lam0.reshape(-1)) * scale
    evals = jnp.sort(jnp.maximum(jnp.linalg.eigvalsh(gram(stack)), 0.0).reshape(-1)) * scale
    lam_max = evals[-1]
    fit = mp_fit(rand_evals, Q=n_rows / n_cols, M=n_cols, margin=margin)

    # locate traps: the top max_traps singular triplets over all slices
    n_loc = min(max_traps, rf * k)
    order = jnp.argsort(-lam0.reshape(-1))[:n_loc]
    slice_id, comp = order // k, order % k

    def locate(r, c):
        a = shuffled[0, r]  # (fan_out, fan_in)
        vec = vecs[r][:, c]  # singular vector of the smaller side
        other = a @ vec if tall else vec @ a  # = s * (other singular vector)
        left, right = (other, vec) if tall else (vec, other)
        contrib = jnp.abs(left[:, None] * a * right[None, :])
        pos = jnp.argmax(contrib.reshape(-1))
        orig = perms[0, r, pos]
        idx = [orig // fan_in, orig % fan_in]
        if w.ndim > 2:
            idx += list(jnp.unravel_index(r, w.shape[2:]))
        return jnp.stack([jnp.asarray(i, jnp.int32) for i in idx])

    located = jax.vmap(locate)(slice_id, comp)  # (n_loc, ndim)
    is_trap = jnp.arange(n_loc) < fit.num_spikes
    located = jnp.where(is_trap[:, None], located, -1)
    if n_loc < max_traps:
        located = jnp.concatenate(
            [located, jnp.full((max_traps - n_loc, w.ndim), -1, jnp.int32)], axis=0
        )

    ok = fit.ok & jnp.isfinite(lam_max) & (lam_max > 0)
    nan = jnp.asarray(jnp.nan, dtype)
    return TrapStats(
        max_rand_eval=jnp.where(ok, max_rand_eval, nan),
        ww_softrank=jnp.where(ok, max_rand_eval / jnp.where(ok, lam_max, 1.0), nan),
        ww_maxdist=jnp.where(ok, lam_max - max_rand_eval, nan),
        num_traps=fit.num_spikes,
        rand_sigma_mp=fit.sigma,
        rand_mp_softrank=fit.mp_softrank,
        rand_bulk_max=fit.bulk_max,
        rand_distance=_rand_distance(evals, rand_evals, jnp.ones(evals.shape, bool), "ww", 100),
        trap_index=located.astype(jnp.int32),
        ok=ok,
    )
