r"""Power-law fits of eigenvalue tails (docs/math.md §2): ``fit_pl`` and its candidate scan.

Continuous power law (Clauset, Shalizi & Newman 2009):

.. math:: p(x) = \frac{\alpha - 1}{x_{\min}} \Big(\frac{x}{x_{\min}}\Big)^{-\alpha},
          \qquad x \ge x_{\min}.

Default procedure (WeightWatcher 0.7.7's own fit, identical numbers): keep
:math:`\lambda > 10^{-5}`, sort :math:`x_1 \le \dots \le x_n`; every :math:`x_i` but the largest
is a candidate :math:`x_{\min}`, with tail size :math:`n_i = n - i + 1` and

.. math:: \hat\alpha_i = 1 + n_i \Big/ \sum_{j \ge i} \ln(x_j / x_i), \qquad
          D_i = \max_{j \ge i} \Big| 1 - (x_j/x_i)^{1-\hat\alpha_i} - \frac{j - i}{n_i} \Big|,

and the fit is the candidate of smallest KS distance :math:`D_i` (ties to the smallest
:math:`x_{\min}`). All candidates are scored at once, in chunks of candidates so memory stays
bounded (:func:`pl_candidates`); nothing loops over candidates in Python.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Bool, Float, Int

from rmtkit.core import validate
from rmtkit.core.esd import masked

#: eigenvalues at or below this absolute value are dropped before fitting (WW ``EVALS_THRESH``)
EVALS_THRESH = 1e-5
#: spectra with fewer fitted eigenvalues use the small-n rule (WW ``SMALL_N_CUTOFF``)
SMALL_N_CUTOFF = 20
#: smallest tail the small-n rule considers (WW ``k_min``)
SMALL_N_MIN_TAIL = 8
#: tail-size bonus of the small-n objective :math:`D_i - c/\sqrt{n_i}` (WW 0.7.7)
SMALL_N_BONUS = 0.868
#: most candidate x data pairs held in memory at once by the KS scan
CHUNK_ELEMENTS = 1 << 22
#: float64 searches rescore this many best float32 candidates exactly (see ``_search``)
RESCORE = 16
#: the folded KS scan splits the candidates into at least this many blocks (_scan_pair)
FOLD_BLOCKS = 8

XMIN_METHODS = ("search", "median", "peak")
FIX_FINGERS = (None, "clip_xmax")


class PowerLawFit(NamedTuple):
    """Result of :func:`fit_pl`; 0-d array fields, so fits stack under ``jax.vmap``.

    alpha : power-law exponent (NaN when the fit failed).
    xmin, xmax : the fitted range (xmax = largest eigenvalue used).
    D : Kolmogorov-Smirnov distance of the fit.
    sigma : standard error :math:`(\\alpha - 1)/\\sqrt{n_{\\rm tail}}`.
    num_pl_spikes : tail size :math:`n_{\\rm tail}` (eigenvalues :math:`\\ge x_{\\min}`).
    num_evals : eigenvalues fitted (after the threshold and ``xmax`` clipping).
    alpha_lo, alpha_hi : exact confidence interval of alpha at the chosen xmin (NaN unless
        ``ci`` is given).
    raw_alpha : alpha of the first fit, before ``fix_fingers`` (= alpha otherwise).
    num_fingers : top eigenvalues dropped by ``fix_fingers`` (0 otherwise).
    """

    alpha: Float[Array, ""]
    xmin: Float[Array, ""]
    xmax: Float[Array, ""]
    D: Float[Array, ""]
    sigma: Float[Array, ""]
    num_pl_spikes: Int[Array, ""]
    num_evals: Int[Array, ""]
    alpha_lo: Float[Array, ""]
    alpha_hi: Float[Array, ""]
    raw_alpha: Float[Array, ""]
    num_fingers: Int[Array, ""]


class PowerLawCandidates(NamedTuple):
    """Every candidate of the xmin scan (:func:`pl_candidates`), e.g. to plot D and alpha
    against xmin. ``valid`` is False for padding and for candidates a rule excludes."""

    xmin: Float[Array, " n"]
    alpha: Float[Array, " n"]
    D: Float[Array, " n"]
    n_tail: Int[Array, " n"]
    valid: Bool[Array, " n"]


# ---------------------------------------------------------------------------------------------
# Preparation: threshold, sort, count.


def _sorted_valid(evals: Array, mask: Array, thresh: float) -> tuple[Array, Array, Array]:
    """Sort the fitted eigenvalues first; return ``(x, n, bad)``.

    ``x`` holds the ``n`` eigenvalues ``> thresh`` (of those marked valid) in ascending order,
    then 1.0 as harmless padding; ``bad`` is True when a valid entry is NaN or infinite (then
    every result is NaN: a broken matrix must not yield a confident number).
    """
    bad = jnp.any(mask & ~jnp.isfinite(evals))
    keep = mask & jnp.isfinite(evals) & (evals > thresh)
    x = jnp.sort(jnp.where(keep, evals, jnp.inf))
    n = jnp.sum(keep)
    x = jnp.where(jnp.arange(x.size) < n, x, 1.0)
    return x, n, bad


# ---------------------------------------------------------------------------------------------
# Candidate scan: alpha_i and D_i for a block of candidates against all data, exact sums.


def _alpha_exponent(n_i: Array, total: Array, small: Array | bool) -> tuple[Array, Array]:
    r"""The candidates' :math:`\hat\alpha = 1 + n_i / S_i` (``small``: the bias-corrected
    :math:`1 + (n_i - 1)/S_i`) and the KS model's exponent :math:`1 - \hat\alpha` in
    :math:`(x_j/x_i)^{1-\hat\alpha}`, clamped so that :math:`\hat\alpha = \infty` (a flat
    tail) gives :math:`0 \cdot (-\mathrm{big}) = 0 \to 1`, as numpy's ``1.0 ** -inf``,
    without the cost of a select per element."""
    alpha = 1.0 + jnp.where(small, n_i - 1.0, n_i) / total
    return alpha, jnp.maximum(1.0 - alpha, jnp.finfo(total.dtype).min)


def _scan_block(
    first: Array, size: int, lx: Array, n: Array, *, small: Array | bool, force: bool
) -> tuple[Array, Array]:
    """``(alpha_i, D_i)`` for candidates ``first .. first+size-1`` (0-based).

    ``lx`` are the logs of the sorted data, ``n`` the number of data. The sums
    :math:`\\sum_{j\\ge i}\\ln(x_j/x_i)` are formed directly (no suffix-sum cancellation), so
    float32 stays accurate. ``small`` switches to the bias-corrected
    :math:`1 + (n_i - 1)/\\sum`; ``force`` renormalises the model CDF to :math:`[x_{\\min},
    x_{\\max}]`.
    """
    length = lx.shape[0]
    i = first + jnp.arange(size)
    j = jnp.arange(length)
    lxi = lx[jnp.clip(i, 0, length - 1)]
    tail = (j[None, :] >= i[:, None]) & (j[None, :] < n)
    d = jnp.where(tail, lx[None, :] - lxi[:, None], 0.0)  # ln(x_j / x_i) >= 0 on the tail
    total = jnp.sum(d, axis=1)
    n_i = (n - i).astype(lx.dtype)
    alpha, expo = _alpha_exponent(n_i, total, small)
    expo = expo[:, None]
    model = 1.0 - jnp.exp(expo * d)
    if force:
        d_top = (lx[jnp.maximum(n - 1, 0)] - lxi)[:, None]
        model = model / (1.0 - jnp.exp(expo * d_top))
    inv = 1.0 / n_i  # ecdf (j - i)/n_i as two products: no division per element
    ecdf = j[None, :].astype(lx.dtype) * inv[:, None] - (i * inv)[:, None]
    ks = jnp.max(jnp.where(tail, jnp.abs(model - ecdf), 0.0), axis=1)
    return alpha, jnp.where(alpha > 1.0, ks, 1.0)


def _tail_log_sums(lx: Array, n: Array) -> Array:
    r""":math:`S_i = \sum_{i \le j < n} \ln(x_j / x_i)` for every position ``i`` in O(n).

    With :math:`\Delta_m = \ln x_m - \ln x_{m-1} \ge 0`,
    :math:`S_i = \sum_{i < m < n} (n - m)\,\Delta_m`: a suffix sum of non-negative terms, so
    no cancellation (float32 keeps its precision, as the direct sums of :func:`_scan_block`).
    """
    m = jnp.arange(lx.shape[0])
    delta = jnp.where((m >= 1) & (m < n), lx - jnp.roll(lx, 1), 0.0)
    suffix = jnp.cumsum(((n - m).astype(lx.dtype) * delta)[::-1])[::-1]  # sum over m' >= m
    return jnp.concatenate([suffix[1:], jnp.zeros(1, lx.dtype)])


class _Candidates(NamedTuple):
    """Per-candidate constants of the KS scan (arrays over positions ``i``)."""

    alpha: Array  # 1 + n_i / S_i (small n: (n_i - 1) / S_i)
    expo: Array  # 1 - alpha, clamped (alpha = inf: a flat tail)
    inv: Array  # 1 / n_i
    offset: Array  # i / n_i: the ecdf (j - i) / n_i = j / n_i - i / n_i
    scale: Array | None  # with ``force``: 1 / (1 - (x_max / x_i)^(1 - alpha)); else None


def _candidates(lx: Array, n: Array, *, small: Array | bool, force: bool) -> _Candidates:
    """The constants of every candidate position of sorted log-data ``lx[:n]``."""
    i = jnp.arange(lx.shape[0])
    n_i = (n - i).astype(lx.dtype)
    alpha, expo = _alpha_exponent(n_i, _tail_log_sums(lx, n), small)
    scale = None
    if force:
        scale = 1.0 / (1.0 - jnp.exp(expo * (lx[jnp.maximum(n - 1, 0)] - lx)))
    return _Candidates(alpha, expo, 1.0 / n_i, i.astype(lx.dtype) / n_i, scale)


def _scan_pair(b: Array, size: int, lx: Array, ext: Array, n: Array, c: _Candidates):
    """KS distances of candidate block ``b`` and of its mirror ``nb - 1 - b`` in one tile.

    ``lx`` (length ``L = size * nb``) are the logs of the sorted data (padded), ``ext`` is
    ``lx`` followed by ``lx`` reversed. Candidate ``i`` needs the data ``j >= i`` only: block
    ``b`` (``a = b * size + r``) the last ``L - b * size``, its mirror
    (``c = (nb - 1 - b) * size + r``) the last ``(b + 1) * size``. Row ``r`` of the tile,
    ``ext[b * size :][: L + size]``, holds both: the data ``a0 .. L-1`` for ``a`` (part A),
    then ``L-1`` down to ``c0`` for ``c`` (part C), so ``size x (L + size)`` pairs replace
    the ``2 x size x L`` of two blocks: half the exponentials of the scan. One reduction
    gives both parts' maxima. Returns ``(D_a, D_c)``, each of length ``size``.
    """
    length = lx.shape[0]
    width = length + size
    a0 = b * size
    cols = jax.lax.dynamic_slice(ext, (a0,), (width,))  # ln x_j at each column
    k = jnp.arange(width, dtype=jnp.int32)
    in_a = k < length - a0
    part_a = in_a[None, :]
    j = jnp.where(in_a, a0 + k, 2 * length - 1 - a0 - k)  # each column's data index
    r = jnp.arange(size, dtype=jnp.int32)[:, None]
    # j >= i is k >= r on part A and k <= width-1-r on part C (each true on the other part)
    tail = (k[None, :] >= r) & (k[None, :] <= width - 1 - r) & (j < n)[None, :]
    ia, ic = a0 + r[:, 0], length - (b + 1) * size + r[:, 0]

    def pick(v):  # the row's value for the candidate of each column's part
        return jnp.where(part_a, v[ia][:, None], v[ic][:, None])

    model = 1.0 - jnp.exp(pick(c.expo) * (cols[None, :] - pick(lx)))
    if c.scale is not None:
        model = model * pick(c.scale)
    ecdf = j.astype(lx.dtype)[None, :] * pick(c.inv) - pick(c.offset)
    dev = jnp.where(tail, jnp.abs(model - ecdf), 0.0)
    zero = jnp.zeros((), dev.dtype)
    return jax.lax.reduce(
        (jnp.where(part_a, dev, zero), jnp.where(part_a, zero, dev)),
        (zero, zero),
        lambda u, v: (jnp.maximum(u[0], v[0]), jnp.maximum(u[1], v[1])),
        (1,),
    )


def _block_size(length: int, chunk: int = CHUNK_ELEMENTS) -> int:
    """Candidates per block of the folded scan (:func:`_scan_pair`): a power of two, at most
    ``length / FOLD_BLOCKS``, with ``block * (length + block) <= chunk`` where possible; 0
    for a spectrum too short to fold."""
    if length < 2 * FOLD_BLOCKS:
        return 0
    block = 1
    while (block * 2) * FOLD_BLOCKS <= length and block * 2 * (length + block * 2) <= chunk:
        block *= 2
    return block


def _scan_all(
    lx: Array, n: Array, *, small: Array, force: bool, chunk: int = CHUNK_ELEMENTS
) -> tuple[Array, Array]:
    """``(alpha_i, D_i)`` for every candidate position ``0 .. length-1``.

    Alpha from the O(n) tail sums (:func:`_candidates`), D a block and its mirror block at a
    time (:func:`_scan_pair`), at most about ``chunk`` candidate x data pairs per tile
    (smaller tiles stay in cache, which is faster when many fits run under ``vmap``; the
    results do not depend on it). Spectra shorter than ``2 * FOLD_BLOCKS``: one
    :func:`_scan_block`.
    """
    length = lx.shape[0]
    block = _block_size(length, chunk)
    if block == 0:
        return _scan_block(jnp.asarray(0), length, lx, n, small=small, force=force)
    n_blocks = -(-length // block)
    pad = n_blocks * block - length
    padded = jnp.pad(lx, (0, pad))
    cand = _candidates(lx, n, small=small, force=force)
    cand_padded = jax.tree.map(lambda v: jnp.pad(v, (0, pad), constant_values=1.0), cand)
    ext = jnp.concatenate([padded, padded[::-1]])
    pairs = -(-n_blocks // 2)
    ks_a, ks_c = jax.lax.map(
        lambda b: _scan_pair(b, block, padded, ext, n, cand_padded), jnp.arange(pairs)
    )
    # blocks 0 .. pairs-1 from part A; blocks pairs .. n_blocks-1 are the mirrors of
    # n_blocks-pairs-1 .. 0 (an odd middle block is its own mirror: part A is kept)
    ks = jnp.concatenate([ks_a.reshape(-1), ks_c[: n_blocks - pairs][::-1].reshape(-1)])
    return cand.alpha, jnp.where(cand.alpha > 1.0, ks[:length], 1.0)


def _score(alpha: Array, ks: Array, n: Array, i: Array, *, small: Array, allowed: Array):
    r"""Selection score of candidates ``i`` (lower is better) and their validity.

    Standard rule: :math:`D_i` over candidates ``0 .. n-2``. Small-n rule (n < 20):
    :math:`D_i - 0.868/\sqrt{n_i}` over tails :math:`n_i \ge 8` with :math:`\hat\alpha_i > 1`.
    ``allowed`` restricts the candidates further (xmin range of the "peak" method).
    """
    n_i = (n - i).astype(ks.dtype)
    ok = (i < n - 1) & allowed
    ok_small = ok & (n_i >= SMALL_N_MIN_TAIL) & (alpha > 1.0) & jnp.isfinite(alpha)
    valid = jnp.where(small, ok_small, ok)
    score = jnp.where(small, ks - SMALL_N_BONUS / jnp.sqrt(jnp.maximum(n_i, 1.0)), ks)
    return jnp.where(valid, score, jnp.inf), valid


# ---------------------------------------------------------------------------------------------
# One fit at a known candidate index.


def _fit_at(x: Array, n: Array, i: Array, *, small, force: bool) -> tuple[Array, Array]:
    """``(alpha, D)`` at candidate index ``i`` (a one-candidate block)."""
    lx = jnp.log(x)
    alpha, ks = _scan_block(i, 1, lx, n, small=small, force=force)
    return alpha[0], ks[0]


def gamma_quantile(p: ArrayLike, shape: ArrayLike, *, iters: int = 30) -> Array:
    r"""Quantile :math:`G^{-1}(p; k)` of the Gamma(k, 1) distribution, jit-able.

    Newton iterations on :math:`\ln x` for :math:`P(k, x) = p` (regularised lower incomplete
    gamma), started from the Wilson-Hilferty approximation; converges to float precision for
    :math:`k \ge 1` in well under ``iters`` steps.
    """
    p = jnp.asarray(p, dtype=jnp.result_type(float))
    k = jnp.asarray(shape, dtype=p.dtype)
    z = jnp.sqrt(2.0) * jax.scipy.special.erfinv(2.0 * p - 1.0)
    wh = k * (1.0 - 1.0 / (9.0 * k) + z / (3.0 * jnp.sqrt(k))) ** 3
    log_x = jnp.log(jnp.maximum(wh, 1e-3 * k))

    def newton(_, log_x):
        x = jnp.exp(log_x)
        f = jax.scipy.special.gammainc(k, x) - p
        log_pdf = (k - 1.0) * log_x - x - jax.scipy.special.gammaln(k)
        step = f / jnp.exp(log_pdf + log_x)  # dP/d(ln x) = pdf(x) * x
        return log_x - jnp.clip(step, -2.0, 2.0)

    return jnp.exp(jax.lax.fori_loop(0, iters, newton, log_x))


def _log_sum(x: Array, n: Array, i: Array) -> Array:
    r""":math:`S = \sum_{i \le j < n} \ln(x_j / x_i)`, the statistic behind alpha at index i."""
    j = jnp.arange(x.shape[0])
    xi = x[jnp.maximum(i, 0)]
    return jnp.sum(jnp.where((j >= i) & (j < n), jnp.log(x / xi), 0.0))


def _confidence(alpha: Array, n_tail: Array, total: Array, ci: float) -> tuple[Array, Array]:
    r"""Exact CI of alpha at a fixed xmin that is itself a data point.

    With the tail's smallest point as xmin, :math:`S = \sum_j \ln(x_j/x_{\min})` has
    :math:`n_{\rm tail} - 1` non-zero terms, i.i.d. exponential of rate :math:`\alpha - 1`
    (Rényi), so :math:`(\alpha - 1) S \sim \mathrm{Gamma}(n_{\rm tail} - 1, 1)` and
    :math:`\alpha \in 1 + [G^{-1}(a/2), G^{-1}(1 - a/2)]/S`, :math:`a = 1 - ` ``ci``.
    """
    k = jnp.maximum(n_tail - 1, 1).astype(alpha.dtype)
    half = (1.0 - ci) / 2.0
    lo = 1.0 + gamma_quantile(half, k).astype(alpha.dtype) / total
    hi = 1.0 + gamma_quantile(1.0 - half, k).astype(alpha.dtype) / total
    ok = (n_tail >= 2) & (total > 0)
    return jnp.where(ok, lo, jnp.nan), jnp.where(ok, hi, jnp.nan)


# ---------------------------------------------------------------------------------------------
# xmin selection rules.


def peak_range(x: Array, valid: Array, xmin_max=None) -> tuple[Array, Array]:
    r"""The "peak" xmin range :math:`[0.95 p, x_{\min,\max}]` (default :math:`1.5 p`), where
    :math:`p` is the left edge of the modal bin of a 100-bin histogram of
    :math:`\log_{10}\lambda` over the ``valid`` entries of ``x`` (WW's ``xmin_peak``, with its
    unit bug fixed: both ends are eigenvalues)."""
    lg = jnp.log10(jnp.where(valid, x, 1.0))
    lo = jnp.min(jnp.where(valid, lg, jnp.inf))
    hi = jnp.max(jnp.where(valid, lg, -jnp.inf))
    width = jnp.where(hi > lo, hi - lo, 1.0)
    idx = jnp.clip(jnp.floor((lg - lo) / width * 100.0), 0, 99).astype(jnp.int32)
    counts = jnp.zeros(100, jnp.int32).at[idx].add(valid.astype(jnp.int32))
    peak = 10.0 ** (lo + jnp.argmax(counts) * width / 100.0)
    upper = 1.5 * peak if xmin_max is None else jnp.asarray(xmin_max, x.dtype)
    return 0.95 * peak, upper


def _peak_allowed(x: Array, n: Array, xmin_max) -> Array:
    """Candidates of sorted data ``x[:n]`` inside :func:`peak_range`."""
    lower, upper = peak_range(x, jnp.arange(x.shape[0]) < n, xmin_max)
    return (x >= lower) & (x <= upper)


def _search(x: Array, n: Array, *, force: bool, allowed: Array | None, chunk=CHUNK_ELEMENTS):
    """Best candidate by the docs/math.md §2 rules: ``(index, alpha, D)``; index = -1 if none.

    Float64 data are scanned in float32 (the O(n²) KS step runs ~10x faster), then the
    :data:`RESCORE` best candidates are scored again exactly in float64 and the best of those
    is taken (ties to the smallest xmin). float32 errors in D are ~1e-6, far below the gap
    between the best candidate and the :data:`RESCORE`-th, so the result is the float64
    search's. ``allowed=None`` is the unrestricted search, where WW's small-n fallback
    applies: with no admissible tail, the whole spectrum (index 0, bias-corrected alpha).
    """
    small = n < SMALL_N_CUTOFF
    length = x.shape[0]
    everything = jnp.ones(x.shape, dtype=bool)
    allowed = everything if allowed is None else allowed
    fallback = jnp.where(small, 0 if allowed is everything else -1, -1)
    lx = jnp.log(x)
    fast = lx.astype(jnp.float32)
    positions = jnp.arange(length)
    alpha, ks = _scan_all(fast, n, small=small, force=force, chunk=chunk)
    score, valid = _score(alpha, ks, n, positions, small=small, allowed=allowed)
    if fast.dtype != lx.dtype:
        _, top = jax.lax.top_k(-score, min(RESCORE, length))
        top = jnp.sort(top)
        alpha, ks = jax.vmap(lambda i: _fit_at(x, n, i, small=small, force=force))(top)
        score, _ = _score(alpha, ks, n, top, small=small, allowed=allowed[top])
        positions = top
    k = jnp.argmin(score)
    best = jnp.where(jnp.any(valid), positions[k], fallback)
    if fast.dtype != lx.dtype:  # the fallback (index 0) is not among the rescored ones
        a0, d0 = _fit_at(x, n, jnp.asarray(0), small=small, force=force)
        return (
            best,
            jnp.where(best == positions[k], alpha[k], a0),
            jnp.where(best == positions[k], ks[k], d0),
        )
    return best, alpha[jnp.maximum(best, 0)], ks[jnp.maximum(best, 0)]


def _one_fit(x, n, *, xmin, xmin_method, xmin_max, force, chunk=CHUNK_ELEMENTS):
    """``(index, alpha, D)`` of one fit on sorted data ``x[:n]``, any xmin rule."""
    if xmin is not None or xmin_method == "median":
        if xmin is not None:
            valid = jnp.arange(x.shape[0]) < n
            i = jnp.argmin(jnp.where(valid, jnp.abs(x - xmin), jnp.inf))
        else:
            i = n // 2
        alpha, ks = _fit_at(x, n, i, small=False, force=force)
        return i, alpha, ks
    allowed = _peak_allowed(x, n, xmin_max) if xmin_method == "peak" else None
    return _search(x, n, force=force, allowed=allowed, chunk=chunk)


def _succeeded(n: Array, i: Array, alpha: Array, ks: Array) -> Array:
    """Whether a fit at index ``i`` of ``n`` data is a real fit (else its fields are NaN)."""
    return (i >= 0) & (n >= 2) & (alpha > 1.0) & jnp.isfinite(alpha) & jnp.isfinite(ks)


def _assemble(
    x, n, i, alpha, ks, *, ci: float | None, raw_alpha=None, num_fingers=None, bad=False
) -> PowerLawFit:
    """Package one fit, NaN where it failed (no admissible candidate, too few data, bad data)."""
    dtype = x.dtype
    n_tail = jnp.where(i >= 0, n - i, 0)
    ok = _succeeded(n, i, alpha, ks) & ~bad
    nan = jnp.asarray(jnp.nan, dtype)
    alpha = jnp.where(ok, alpha, nan)
    if ci is None:
        lo = hi = nan
    else:
        lo, hi = _confidence(alpha, n_tail, _log_sum(x, n, i), ci)
    return PowerLawFit(
        alpha=alpha,
        xmin=jnp.where(ok, x[jnp.maximum(i, 0)], nan),
        xmax=jnp.where(ok, x[jnp.maximum(n - 1, 0)], nan),
        D=jnp.where(ok, ks, nan),
        sigma=jnp.where(ok, (alpha - 1.0) / jnp.sqrt(jnp.maximum(n_tail, 1).astype(dtype)), nan),
        num_pl_spikes=jnp.where(ok, n_tail, 0),
        num_evals=jnp.where(bad, 0, n),
        alpha_lo=jnp.where(ok, lo, nan),
        alpha_hi=jnp.where(ok, hi, nan),
        raw_alpha=alpha if raw_alpha is None else jnp.where(bad, nan, raw_alpha),
        num_fingers=jnp.asarray(0) if num_fingers is None else num_fingers,
    )


def _fit_sorted(x, n, bad, *, ci, **fit_kw) -> PowerLawFit:
    """One fit (no fingers) of data already prepared by :func:`_sorted_valid`: ``x`` ascending
    with ``n`` values, then padding; ``bad`` makes every field NaN. ``fit_kw``: the options
    of :func:`_one_fit`. The body of :func:`fit_pl`, shared with the bootstrap of
    :func:`rmtkit.pl_pvalue`, which draws its samples in order."""
    i, alpha, ks = _one_fit(x, n, **fit_kw)
    return _assemble(x, n, i, alpha, ks, ci=ci, bad=bad)


def _fix_fingers(x, n, first_alpha, fit_kw, *, max_fingers: int, finger_thresh: float):
    """WW's ``fit_clipped_powerlaw``: refit without the top k = 2 .. max_fingers-1 values.

    The first refit whose alpha is below the first fit's by more than ``finger_thresh`` is
    kept; the scan stops (keeping the first fit) at the first refit with alpha <= 2. All refits
    are computed at once (``vmap`` over k) and the sequential rule applied to the vector.
    Returns ``(k, index, alpha, D, n_used)`` with ``k = 0`` when the first fit is kept.
    """
    ks_drop = jnp.arange(2, max_fingers)
    idx, alphas, dists = jax.vmap(lambda k: _one_fit(x, n - k, **fit_kw))(ks_drop)
    alphas = jnp.where(_succeeded(n - ks_drop, idx, alphas, dists), alphas, jnp.nan)
    accept = alphas + finger_thresh < first_alpha
    stop = accept | (alphas <= 2.0)
    first = jnp.argmax(stop)
    take = jnp.any(stop) & accept[first]
    k = jnp.where(take, ks_drop[first], 0)
    return k, idx[first], alphas[first], dists[first], take


def fit_pl(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    xmin: float | Float[ArrayLike, ""] | None = None,
    xmin_method: str = "search",
    xmin_max: float | None = None,
    xmax: None | str | int = None,
    fix_fingers: str | None = None,
    max_fingers: int = 10,
    finger_thresh: float = 1.0,
    thresh: float = EVALS_THRESH,
    ci: float | None = None,
) -> PowerLawFit:
    r"""Fit a continuous power law to the upper tail of one eigenvalue spectrum (docs/math.md §2).

    .. math:: \hat\alpha = 1 + n_{\rm tail} \Big/ \sum_{x_j \ge x_{\min}} \ln(x_j / x_{\min}),
              \qquad \sigma = (\hat\alpha - 1)/\sqrt{n_{\rm tail}}

    with :math:`x_{\min}` chosen by minimum Kolmogorov-Smirnov distance over all eigenvalues
    (module docstring). Spectra with fewer than 20 eigenvalues above ``thresh`` use
    WeightWatcher 0.7.7's small-n rule: tails of at least 8, bias-corrected
    :math:`\hat\alpha = 1 + (n_{\rm tail} - 1)/\sum\ln(x_j/x_{\min})`, and the candidate
    minimising :math:`D - 0.868/\sqrt{n_{\rm tail}}`.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one matrix (raw units), any order; ``jax.vmap`` for a batch.
    mask : bool array, shape (n,), optional
        ``False`` marks padding. Default: all ``True``.
    xmin : float, optional
        Fixed tail start, snapped to the nearest eigenvalue (no search).
    xmin_method : {"search", "median", "peak"}
        "search": all candidates. "median": :math:`x_{\min} = x_{\lfloor n/2 \rfloor}` (0-based,
        the Hill estimator ``PL_Alpha_Hill`` of TempBalance / AlphaPruning). "peak": search
        restricted to :math:`[0.95 p, x_{\min,\max}]`, :math:`p` the left edge of the modal bin of
        a 100-bin histogram of :math:`\log_{10}\lambda`.
    xmin_max : float, optional
        Upper end of the "peak" range; default :math:`1.5 p`.
    xmax : None, "force" or negative int
        None: the tail runs to :math:`\lambda_{\max}`. "force": the model CDF is renormalised
        to :math:`[x_{\min}, \lambda_{\max}]` in the KS step. ``-k``: drop the top ``k``
        eigenvalues first (NaN fit if ``k`` exceeds half the spectrum).
    fix_fingers : {None, "clip_xmax"}
        "clip_xmax": refit after dropping the top 2 .. ``max_fingers``-1 eigenvalues and keep
        the first refit with alpha lower than the first fit's by more than ``finger_thresh``,
        stopping at the first refit with alpha <= 2. ``num_fingers`` reports the eigenvalues
        actually dropped (WW reports one fewer) and ``raw_alpha`` the first fit.
    max_fingers, finger_thresh :
        Knobs of ``fix_fingers`` (WW defaults 10 and 1.0).
    thresh : float, default 1e-5
        Eigenvalues ``<= thresh`` are not fitted (absolute, as WW).
    ci : float, optional
        Level (e.g. 0.95) of the exact confidence interval ``alpha_lo, alpha_hi`` at the chosen
        xmin: :math:`(\alpha-1)S \sim \mathrm{Gamma}(n_{\rm tail}-1, 1)`
        (:func:`_confidence`). Default None: not computed (NaN), since the gamma quantile
        roughly doubles the compile time of a fit.

    Returns
    -------
    PowerLawFit
        0-d arrays. A fit that cannot be made (fewer than 2 eigenvalues above ``thresh``, no
        admissible candidate, NaN/Inf in the data) has NaN alpha, xmin, xmax, D, sigma.

    References
    ----------
    .. [1] Clauset, Shalizi, Newman, SIAM Review 51 (2009). :doi:`10.1137/070710111`
    .. [2] Martin, Mahoney, JMLR 22 (2021) 1-73.

    Examples
    --------
    >>> evals = jnp.exp(jnp.arange(11.0) / 5)  # sum of logs above xmin=1 is 11 = n_tail
    >>> float(rmtkit.fit_pl(evals, xmin=1.0).alpha)
    2.0
    """
    x, m = masked(evals, mask)
    validate.choice(xmin_method, "xmin_method", XMIN_METHODS)
    validate.choice(fix_fingers, "fix_fingers", FIX_FINGERS)
    force, drop = _xmax_mode(xmax)
    if ci is not None and not 0.0 < ci < 1.0:
        raise validate.InvalidArgumentError(f"`ci` must be in (0, 1); got {ci!r}.")
    validate.positive(max_fingers, "max_fingers", integer=True)
    return _fit_pl_compiled(
        x,
        m,
        xmin,
        xmin_method=xmin_method,
        xmin_max=xmin_max,
        force=force,
        drop=drop,
        fix_fingers=fix_fingers,
        max_fingers=max_fingers,
        finger_thresh=finger_thresh,
        thresh=thresh,
        ci=ci,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "xmin_method",
        "xmin_max",
        "force",
        "drop",
        "fix_fingers",
        "max_fingers",
        "finger_thresh",
        "thresh",
        "ci",
        "chunk",
    ),
)
def _fit_pl_compiled(
    x,
    m,
    xmin,
    *,
    xmin_method,
    xmin_max,
    force,
    drop,
    fix_fingers,
    max_fingers,
    finger_thresh,
    thresh,
    ci,
    chunk=CHUNK_ELEMENTS,
) -> PowerLawFit:
    """The body of :func:`fit_pl` on validated inputs, compiled once per shape and options
    (so eager calls are fast too; under an outer ``jit``/``vmap`` it is simply inlined).
    ``chunk`` bounds the block of the KS scan (:func:`_scan_all`); it changes the speed only."""
    x, n, bad = _sorted_valid(x, m, thresh)
    if drop:
        too_many = drop > n // 2
        n = jnp.where(too_many, 0, n - drop)
    fit_kw = dict(xmin=xmin, xmin_method=xmin_method, xmin_max=xmin_max, force=force, chunk=chunk)
    if fix_fingers is None:
        return _fit_sorted(x, n, bad, ci=ci, **fit_kw)
    i, alpha, ks = _one_fit(x, n, **fit_kw)
    k, i2, alpha2, ks2, take = _fix_fingers(
        x, n, alpha, fit_kw, max_fingers=max_fingers, finger_thresh=finger_thresh
    )
    first = _assemble(x, n, i, alpha, ks, ci=ci, bad=bad)
    clipped = _assemble(
        x, n - k, i2, alpha2, ks2, ci=ci, raw_alpha=first.alpha, num_fingers=k, bad=bad
    )
    return jax.tree.map(
        lambda a, b: jnp.where(take, a, b),
        clipped,
        first._replace(raw_alpha=first.alpha, num_fingers=jnp.asarray(0)),
    )


def _xmax_mode(xmax) -> tuple[bool, int]:
    """``(force, drop)`` from the ``xmax`` option (checked at trace time)."""
    if xmax is None:
        return False, 0
    if isinstance(xmax, str):
        validate.choice(xmax, "xmax", ("force",))
        return True, 0
    if isinstance(xmax, int) and not isinstance(xmax, bool) and xmax < 0:
        return False, -xmax
    raise validate.InvalidArgumentError(
        f"`xmax` must be None, 'force' or a negative int -k (drop the top k eigenvalues); "
        f"got {xmax!r}."
    )


def pl_candidates(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    thresh: float = EVALS_THRESH,
) -> PowerLawCandidates:
    r"""Alpha and KS distance at every candidate xmin of the default search (for plots).

    Entry ``i`` is the candidate :math:`x_i` of the sorted fitted eigenvalues; ``valid`` marks
    the candidates the default rule chooses among (padding and excluded tails are False).
    ``argmin(where(valid, D, inf))`` is the default fit for n >= 20. ``alpha`` and ``D`` are
    NaN where ``valid`` is False or where they are not finite (a tail of equal values has
    :math:`\hat\alpha = \infty`); a NaN or infinite eigenvalue makes every candidate invalid,
    as it makes :func:`fit_pl` fail.
    """
    x, m = masked(evals, mask)
    x, n, bad = _sorted_valid(x, m, thresh)
    small = n < SMALL_N_CUTOFF
    alpha, ks = _scan_all(jnp.log(x), n, small=small, force=False)
    positions = jnp.arange(x.shape[0])
    _, valid = _score(alpha, ks, n, positions, small=small, allowed=jnp.ones(x.shape, bool))
    valid = valid & ~bad
    nan = jnp.asarray(jnp.nan, alpha.dtype)
    alpha = jnp.where(valid & jnp.isfinite(alpha), alpha, nan)
    ks = jnp.where(valid & jnp.isfinite(ks), ks, nan)
    return PowerLawCandidates(
        xmin=x, alpha=alpha, D=ks, n_tail=jnp.maximum(n - jnp.arange(x.shape[0]), 0), valid=valid
    )
