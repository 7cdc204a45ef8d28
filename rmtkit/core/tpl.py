r"""Truncated power law (TPL) fit of the tail of a spectrum, and E_TPL (docs/math.md §3).

The tail :math:`x \ge x_{\min}` of a spectrum (eigenvalues in any units, typically the raw
:math:`\lambda = s^2` of `rmtkit.esd`; a matrix is :math:`N \times M`, :math:`N \ge M`,
:math:`q = N/M`) is modelled as

.. math:: p(x) = \frac{\Lambda^{1-\alpha}}{\Gamma(1-\alpha, \Lambda x_{\min})}\,
          x^{-\alpha} e^{-\Lambda x}, \qquad x \ge x_{\min},\ \Lambda > 0,

a power law with an exponential cut-off (:math:`\alpha < 1` is allowed: :math:`\Lambda > 0`
keeps it normalisable). It is an exponential family in the natural parameters
:math:`(-\alpha, -\Lambda)` with sufficient statistics :math:`(\ln x, x)`, so the
log-likelihood is concave in :math:`(\alpha, \Lambda)` at fixed :math:`x_{\min}` and the MLE is
unique: a damped Newton method with a vectorised line search finds it in a fixed number of
steps, for every :math:`x_{\min}` candidate at once.
"""

from functools import cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import erfc, gammaln
from jax.typing import ArrayLike
from jaxtyping import Bool, Float, Int

from rmtkit.core import validate
from rmtkit.core.esd import compute_dtype, masked
from rmtkit.core.powerlaw import peak_range
from rmtkit.errors import InvalidArgumentError

#: largest number of downward recurrence steps: s >= -_K_MAX (alpha <= 1 + _K_MAX)
_K_MAX = 32
#: above this x the continued fraction is used, below it the series + the recurrence
_X_CF = 2.0
#: continued-fraction terms (modified Lentz, fixed count)
_CF_TERMS = 80
#: docs/math.md §2 step 1: eigenvalues <= this are dropped before any tail fit
_EVAL_FLOOR = 1e-5

_ALPHA_LO, _ALPHA_HI = -4.0, 1.0 + _K_MAX - 1.0
_LAM_LO, _LAM_HI = 1e-8, 1e3  # Lambda * xmin
_NEWTON_STEPS = 60


_SERIES_TERMS = 30


@cache
def _lgamma_taylor() -> tuple[float, ...]:
    """Taylor coefficients of ln Γ(1+a)/a: -γ, ζ(2)/2, -ζ(3)/3, ... (computed when a kernel is
    first traced: ``scipy.special`` costs ~0.25 s to import, so not at ``import rmtkit``)."""
    import scipy.special

    return tuple(
        [-0.5772156649015329]
        + [(-1.0) ** k * float(scipy.special.zeta(k)) / k for k in range(2, 26)]
    )


def _expm1_over(a, c):
    """expm1(a c) / a, exact limit c at a = 0 (Taylor below 1e-6, so gradients stay finite)."""
    tiny = jnp.abs(a) < 1e-6
    a_safe = jnp.where(tiny, 1.0, a)
    taylor = c * (1.0 + a * c / 2.0 * (1.0 + a * c / 3.0))
    return jnp.where(tiny, taylor, jnp.expm1(a_safe * c) / a_safe)


def _log_gamma_base(a, x):
    """ln Γ(a, x) for a in (-1/2, 1/2], 0 < x <= 2, without cancellation at small |a|:

    Γ(a, x) = (Γ(1+a) - 1)/a - (x^a - 1)/a - x^a Σ_{n>=1} (-x)^n / (n! (a + n)).
    """
    near = jnp.abs(a) <= 0.2
    a_near = jnp.where(near, a, 0.0)
    # ln Γ(1+a) / a = -γ + Σ_k (-1)^k ζ(k)/k a^(k-1) (converges for |a| < 1)
    poly = jnp.zeros_like(a)
    for coef in _lgamma_taylor()[::-1]:
        poly = poly * a_near + coef
    a_far = jnp.where(near, 1.0, a)
    lg_over_a = jnp.where(near, poly, gammaln(1.0 + a_far) / a_far)
    first = _expm1_over(a, lg_over_a)
    logx = jnp.log(x)
    second = _expm1_over(a, logx)

    def term(n, carry):
        total, power = carry  # power = (-x)^n / n!
        fn = n.astype(x.dtype)
        power = power * (-x) / fn
        return total + power / (a + fn), power

    series, _ = jax.lax.fori_loop(1, _SERIES_TERMS + 1, term, (jnp.zeros_like(x), jnp.ones_like(x)))
    return jnp.log(first - second - jnp.exp(a * logx) * series)


def _log_g_small(s, x):
    """ln Γ(s, x) for 0 < x <= _X_CF: the base at s0 = s - round(s) in [-1/2, 1/2], then the
    recurrence Γ(s, x) = (Γ(s+1, x) - x^s e^{-x}) / s down (or up) to s, run on the scaled
    g(s) = Γ(s, x) x^-s e^x: g(s-1) = (x g(s) - 1)/(s - 1), g(s+1) = (s g(s) + 1)/x."""
    m = jnp.round(s)
    s0 = s - m
    logx = jnp.log(x)
    g = jnp.exp(_log_gamma_base(s0, x) + x - s0 * logx)

    def step(j, g):
        fj = j.astype(x.dtype)
        down = (x * g - 1.0) / (s0 - fj - 1.0)
        up = ((s0 + fj) * g + 1.0) / x
        return jnp.where(fj < -m, down, jnp.where(fj < m, up, g))

    g = jax.lax.fori_loop(0, _K_MAX, step, g)
    return s * logx - x + jnp.log(g)


def _log_g_cf(s, x):
    """ln Γ(s, x) by the continued fraction (Numerical Recipes `gcf`, modified Lentz)."""
    tiny = jnp.finfo(x.dtype).tiny * 1e10
    b = x + 1.0 - s
    c = jnp.full_like(b, 1.0 / tiny)
    d = 1.0 / b
    h = d

    def step(i, carry):
        b, c, d, h = carry
        fi = i.astype(x.dtype)
        an = -fi * (fi - s)
        b = b + 2.0
        d = an * d + b
        d = jnp.where(jnp.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = jnp.where(jnp.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        return b, c, d, h * d * c

    _, _, _, h = jax.lax.fori_loop(1, _CF_TERMS + 1, step, (b, c, d, h))
    return s * jnp.log(x) - x + jnp.log(h)


def log_upper_gamma(s: Float[ArrayLike, "*#b"], x: Float[ArrayLike, "*#b"]) -> Float[Array, "*#b"]:
    r"""Logarithm of the upper incomplete gamma function :math:`\Gamma(s, x)`, any real
    :math:`s \ge -32`, :math:`x > 0` (negative :math:`s` included).

    .. math:: \Gamma(s, x) = \int_x^\infty t^{s-1} e^{-t}\, dt

    For :math:`x \le 2`: the value at :math:`s_0 = s - \mathrm{round}(s) \in [-\tfrac12,
    \tfrac12]` from :math:`\Gamma(a, x) = \frac{\Gamma(1+a) - 1}{a} - \frac{x^a - 1}{a} -
    x^a\sum_{n \ge 1}\frac{(-x)^n}{n!\,(a+n)}` (no cancellation as :math:`a \to 0`, so
    integer :math:`s` are exact: :math:`\Gamma(0, x) = E_1(x)`), then the recurrence
    :math:`\Gamma(s, x) = (\Gamma(s+1, x) - x^s e^{-x})/s` (docs/math.md §3) down to :math:`s`,
    run on the scaled :math:`g(s) = \Gamma(s, x)\,x^{-s} e^{x}`, for which it reads
    :math:`g(s-1) = (x\,g(s) - 1)/(s-1)` and cannot overflow (never dividing by less than ½).
    The recurrence loses accuracy for large :math:`x`, so for :math:`x > 2` the Legendre
    continued fraction (80 terms, modified Lentz) is used instead. Computed in float64 when
    ``jax_enable_x64`` is on; agrees with mpmath to 2e-12 relative on :math:`s \in [-30, 5]`,
    :math:`x \in [10^{-8}, 10^3]` (integers included). Differentiable in both arguments
    (no ``gammaincc`` inside: JAX lacks its second derivative in the order).

    Parameters
    ----------
    s, x : array
        Order and argument (broadcast together).

    Returns
    -------
    array
        :math:`\ln\Gamma(s, x)`; NaN for :math:`x \le 0` or :math:`s < -32`.

    Examples
    --------
    >>> from rmtkit.core.tpl import log_upper_gamma
    >>> round(float(jnp.exp(log_upper_gamma(-1.5, 1.0))), 5)  # mpmath.gammainc(-1.5, 1)
    0.12649
    """
    s = jnp.asarray(s)
    x = jnp.asarray(x)
    dtype = compute_dtype(jnp.result_type(s, x))
    s, x = jnp.broadcast_arrays(s.astype(dtype), x.astype(dtype))
    return _log_upper_gamma(s, x)


@jax.jit
def _log_upper_gamma(s, x):
    ok = (x > 0) & (s >= -_K_MAX) & jnp.isfinite(s) & jnp.isfinite(x)
    s = jnp.where(ok, s, 0.5)
    x = jnp.where(ok, x, 1.0)
    small = x <= _X_CF
    val = jnp.where(
        small, _log_g_small(s, jnp.minimum(x, _X_CF)), _log_g_cf(s, jnp.maximum(x, _X_CF))
    )
    return jnp.where(ok, val, jnp.nan)


def upper_gamma(s: Float[ArrayLike, "*#b"], x: Float[ArrayLike, "*#b"]) -> Float[Array, "*#b"]:
    r"""Upper incomplete gamma :math:`\Gamma(s, x)` for real :math:`s \ge -32`, :math:`x > 0`.

    ``exp(log_upper_gamma(s, x))``; see `log_upper_gamma` for the method and accuracy.

    Examples
    --------
    >>> from rmtkit.core.tpl import upper_gamma
    >>> round(float(upper_gamma(1.0, 2.0)), 6)  # e^-2
    0.135335
    """
    return jnp.exp(log_upper_gamma(s, x))


# ---------------------------------------------------------------------------------------------
# Tails: sort, drop tiny values, suffix sums of the sufficient statistics.


class _Tail(NamedTuple):
    x: Array  # ascending, kept values first, padding filled with the largest kept value
    kept: Array  # rank < n
    n: Array
    n_tail: Array  # n - i at candidate i (0 for padding)
    s1: Array  # mean ln(x_j / x_i) over the tail of candidate i
    s2: Array  # mean x_j / x_i


def _tail_stats(evals, mask) -> _Tail:
    x, valid = masked(evals, mask)
    dtype = compute_dtype(x.dtype)
    x = x.astype(dtype)
    keep = valid & (x > _EVAL_FLOOR) & jnp.isfinite(x)
    xs = jnp.sort(jnp.where(keep, x, jnp.inf))
    n = jnp.sum(keep)
    rank = jnp.arange(x.shape[0])
    kept = rank < n
    top = jnp.max(jnp.where(keep, x, 1.0))
    xs = jnp.where(kept, xs, top)
    logs = jnp.where(kept, jnp.log(xs), 0.0)
    suffix_log = jnp.cumsum(logs[::-1])[::-1]
    suffix_x = jnp.cumsum(jnp.where(kept, xs, 0.0)[::-1])[::-1]
    n_tail = jnp.where(kept, n - rank, 0)
    nt = jnp.maximum(n_tail, 1).astype(dtype)
    s1 = jnp.where(kept, suffix_log / nt - logs, 0.0)
    s2 = jnp.where(kept, suffix_x / (nt * xs), 1.0)
    return _Tail(xs, kept, n, n_tail, s1, s2)


def _chunked_rows(fn, idx, chunk=64):
    """``fn`` over candidate indices, ``chunk`` rows at a time (vmap inside, ``lax.map``
    outside): bounded memory for the O(n^2) KS step, and one compiled copy of ``fn`` (the
    index vector is padded to a multiple of ``chunk`` instead of a remainder block)."""
    size = idx.shape[0]
    chunk = min(chunk, size)
    n_chunks = -(-size // chunk)
    padded = jnp.concatenate([idx, jnp.zeros((n_chunks * chunk - size,), idx.dtype)])
    out = jax.lax.map(jax.vmap(fn), padded.reshape(n_chunks, chunk))
    return out.reshape(-1)[:size]


# ---------------------------------------------------------------------------------------------
# TPL maximum likelihood at one xmin, in units y = x / xmin, L = Lambda * xmin.


def _clip_theta(theta):
    return jnp.stack(
        [jnp.clip(theta[0], _ALPHA_LO, _ALPHA_HI), jnp.clip(theta[1], _LAM_LO, _LAM_HI)]
    )


#: step in the order s of the 5-point stencils for d/ds and d2/ds2 of ln Γ(s, L), by dtype
_DS = {8: 1e-3, 4: 3e-2}
_STENCIL = (-2.0, -1.0, 0.0, 1.0, 2.0)


def _derivs(theta, s1, s2):
    """Mean log-likelihood, its gradient and Hessian in (alpha, L).

    With s = 1 - alpha, G = ln Γ(s, L) and r = L^(s-1) e^-L / Γ(s, L) (exact x-derivatives:
    G_x = -r, G_xx = -r((s-1)/L - 1) - r^2, G_sx = -r(ln L - G_s)); G_s and G_ss from a
    5-point stencil in s (errors ~1e-12 and ~1e-6 relative). One vectorised call of
    `log_upper_gamma` (autodiff through it compiles slowly and JAX's ``gammaincc`` has no
    second derivative in its order)."""
    a, lam = theta[0], theta[1]
    s = 1.0 - a
    ds = _DS.get(jnp.dtype(theta.dtype).itemsize, 3e-2)
    offsets = jnp.asarray(_STENCIL, theta.dtype) * ds
    g = _log_upper_gamma(s + offsets, jnp.broadcast_to(lam, offsets.shape))
    g0 = g[2]
    g_s = (g[0] - 8.0 * g[1] + 8.0 * g[3] - g[4]) / (12.0 * ds)
    g_ss = (-g[0] + 16.0 * g[1] - 30.0 * g[2] + 16.0 * g[3] - g[4]) / (12.0 * ds**2)
    log_lam = jnp.log(lam)
    r = jnp.exp((s - 1.0) * log_lam - lam - g0)
    g_x = -r
    g_xx = -r * ((s - 1.0) / lam - 1.0) - r * r
    g_sx = -r * (log_lam - g_s)
    ll = -a * s1 - lam * s2 - (a - 1.0) * log_lam - g0
    grad = jnp.stack([-s1 - log_lam + g_s, -s2 - (a - 1.0) / lam - g_x])
    h_aa = -g_ss
    h_al = -1.0 / lam + g_sx
    h_ll = (a - 1.0) / lam**2 - g_xx
    hess = jnp.stack([jnp.stack([h_aa, h_al]), jnp.stack([h_al, h_ll])])
    return ll, grad, hess


def _newton(s1, s2, alpha0):
    """Maximise the mean log-likelihood from (alpha0, 1/s2): damped Newton, fixed steps.

    Each step evaluates `_derivs` once, at a trial point: accepted if it raises the
    likelihood (the next trial is then a full Newton step from it), else the step towards it
    is halved (one `log_upper_gamma` call per step keeps the compiled loop small).
    """
    theta0 = _clip_theta(jnp.stack([alpha0, 1.0 / s2]))
    ll0, g0, h0 = _derivs(theta0, s1, s2)

    def direction(theta, g, h):
        det = h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]
        concave = (h[0, 0] < 0) & (det > 0)
        safe_det = jnp.where(concave, det, 1.0)
        newton = (
            -jnp.stack([h[1, 1] * g[0] - h[0, 1] * g[1], -h[1, 0] * g[0] + h[0, 0] * g[1]])
            / safe_det
        )
        scale = jnp.maximum(jnp.abs(theta), 1.0)
        ascent = g * scale * scale / jnp.maximum(jnp.max(jnp.abs(g * scale)), 1e-300)
        d = jnp.where(concave, newton, ascent)
        return jnp.where(jnp.all(jnp.isfinite(d)), d, 0.0)

    def body(_, carry):
        best, ll_best, h_best, d, t = carry
        trial = _clip_theta(best + t * d)
        ll, g, h = _derivs(trial, s1, s2)
        accept = jnp.isfinite(ll) & (ll > ll_best)
        best = jnp.where(accept, trial, best)
        ll_best = jnp.where(accept, ll, ll_best)
        h_best = jnp.where(accept, h, h_best)
        d = jnp.where(accept, direction(trial, g, h), d)
        t = jnp.where(accept, 1.0, 0.5 * t)
        return best, ll_best, h_best, d, t

    ll0 = jnp.where(jnp.isfinite(ll0), ll0, -jnp.inf)
    carry = (theta0, ll0, h0, direction(theta0, g0, h0), jnp.ones((), s1.dtype))
    theta, ll, hess, _, _ = jax.lax.fori_loop(0, _NEWTON_STEPS, body, carry)
    return theta, ll, hess


class TPLFit(NamedTuple):
    """Result of `fit_tpl`. 0-d array fields, so fits stack under ``jax.vmap``.

    ``Lambda`` is in 1/(input units). ``sigma`` and ``sigma_Lambda`` are the asymptotic
    standard errors of ``alpha`` and ``Lambda`` at the chosen ``xmin`` (inverse Fisher
    information). ``R`` = log-likelihood(TPL) − log-likelihood(PL) at that ``xmin`` (> 0 favours
    the TPL), ``p_value`` = :math:`1 - \\chi^2_1(2|R|)`. ``ok`` False (NaN fields, ``n_tail``
    0) when no candidate has ``min_tail`` points above 1e-5 or the fit did not converge.
    """

    alpha: Float[Array, ""]
    Lambda: Float[Array, ""]
    xmin: Float[Array, ""]
    D: Float[Array, ""]
    n_tail: Int[Array, ""]
    sigma: Float[Array, ""]
    sigma_Lambda: Float[Array, ""]
    loglik: Float[Array, ""]
    R: Float[Array, ""]
    p_value: Float[Array, ""]
    ok: Bool[Array, ""]


def _peak_window(t: _Tail, xmin_max):
    """docs/math.md §2 "peak": [0.95 p, xmin_max (default 1.5 p)], p = left edge of the modal bin of
    a 100-bin histogram of log10 of the kept eigenvalues."""
    return peak_range(t.x, t.kept, xmin_max)


def fit_tpl(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    xmin: float | Float[ArrayLike, ""] | None = None,
    xmin_method: str = "search",
    xmin_max: float | None = None,
    min_tail: int = 10,
) -> TPLFit:
    r"""Fit a truncated power law to the upper tail of a spectrum (docs/math.md §3).

    At every :math:`x_{\min}` candidate (each kept eigenvalue with at least ``min_tail``
    values above it, values :math:`\le 10^{-5}` dropped as in docs/math.md §2) the MLE in
    :math:`(\alpha, \Lambda)` maximises, with :math:`y = x/x_{\min}`, :math:`L = \Lambda x_{\min}`,

    .. math:: \ell/n = -\alpha\,\overline{\ln y} - L\,\bar y - (\alpha - 1)\ln L
              - \ln\Gamma(1-\alpha, L),

    concave in :math:`(\alpha, L)`; 60 damped Newton steps (each evaluates one trial point,
    halving the step on failure; derivatives in :math:`x` exact, in :math:`s` by a 5-point
    stencil), box :math:`\alpha \in [-4, 32]`, :math:`L \in [10^{-8}, 10^3]`) from the PL MLE
    :math:`\alpha_0 = 1 + n/\sum\ln y` and :math:`L_0 = 1/\bar y` (:math:`\Lambda_0` = 1/mean
    tail), vectorised over candidates. The chosen :math:`x_{\min}` minimises the KS distance

    .. math:: D = \max_j \Big|1 - \frac{\Gamma(1-\alpha, \Lambda x_j)}{\Gamma(1-\alpha,
              \Lambda x_{\min})} - \frac{j - i}{n}\Big|

    (left-continuous empirical CDF, ties to the smallest :math:`x_{\min}`). E_TPL is
    ``xmin_method="peak"``: candidates restricted to :math:`[0.95p, x_{\max}]` (docs/math.md §2).
    A likelihood-ratio test against the power law at the same :math:`x_{\min}` (nested models:
    :math:`p = 1 - \chi^2_1(2|R|)`) is reported as ``R``, ``p_value``.

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one matrix, any order; ``jax.vmap`` for a batch.
    mask : bool array, shape (n,), optional
        ``False`` marks padding. Default: all ``True``.
    xmin : float, optional
        Fixed tail start, snapped to the nearest kept eigenvalue (no search).
    xmin_method : {"search", "peak"}, default "search"
    xmin_max : float, optional
        Upper end of the "peak" window (default 1.5 × peak).
    min_tail : int, default 10
        Smallest tail a candidate may have.

    Returns
    -------
    TPLFit
        ``alpha``, ``Lambda``, ``xmin``, ``D``, ``n_tail``, ``sigma``, ``sigma_Lambda``,
        ``loglik``, ``R``, ``p_value``, ``ok``.

    References
    ----------
    .. [1] Clauset, Shalizi, Newman, SIAM Review 51 (2009) 661. :doi:`10.1137/070710111`
    .. [2] Alstott, Bullmore, Plenz, PLoS ONE 9 (2014) e85777 (``powerlaw``: the TPL form).

    Examples
    --------
    >>> x = 1.0 + jax.random.exponential(jax.random.key(0), (2000,))  # alpha = 0, Lambda = 1
    >>> fit = rmtkit.fit_tpl(x, xmin=1.0)
    >>> bool(abs(fit.Lambda - 1.0) < 3 * fit.sigma_Lambda)
    True
    """
    validate.choice(xmin_method, "xmin_method", ("search", "peak"))
    validate.positive(min_tail, "min_tail", integer=True)
    if min_tail < 2:
        raise InvalidArgumentError(f"`min_tail` must be >= 2; got {min_tail!r}.")
    x, valid = masked(evals, mask)
    x = x.astype(compute_dtype(x.dtype))
    xmin = None if xmin is None else jnp.asarray(xmin, x.dtype)
    xmin_max = None if xmin_max is None else jnp.asarray(xmin_max, x.dtype)
    return _fit_tpl(x, valid, xmin, xmin_method, xmin_max, min_tail)


@partial(jax.jit, static_argnames=("xmin_method", "min_tail"))
def _fit_tpl(x, valid, xmin, xmin_method, xmin_max, min_tail) -> TPLFit:
    t = _tail_stats(x, valid)
    dtype = t.x.dtype
    length = t.x.shape[0]
    rank = jnp.arange(length)
    eligible = t.kept & (t.n_tail >= min_tail)
    if xmin is not None:
        target = jnp.asarray(xmin, dtype)
        dist = jnp.where(eligible, jnp.abs(t.x - target), jnp.inf)
        cand = jnp.argmin(dist)[None]
    elif xmin_method == "peak":
        lo, hi = _peak_window(t, xmin_max)
        eligible = eligible & (t.x >= lo) & (t.x <= hi)
        cand = rank
    else:
        cand = rank
    eligible_c = eligible[cand]

    s1 = jnp.where(eligible_c & (t.s1[cand] > 0), t.s1[cand], 1.0)
    s2 = jnp.where(eligible_c, t.s2[cand], 2.0)
    alpha0 = 1.0 + 1.0 / s1
    theta, ll, hess = jax.vmap(_newton)(s1, s2, alpha0)
    alpha, lam = theta[:, 0], theta[:, 1]

    def ks(j):
        i = cand[j]
        tail = t.kept & (rank >= i)
        y = jnp.where(tail, t.x / t.x[i], 1.0)
        sj = 1.0 - alpha[j]
        arg = lam[j] * jnp.concatenate([y, jnp.ones((1,), dtype)])
        both = _log_upper_gamma(jnp.broadcast_to(sj, arg.shape), arg)
        cdf = 1.0 - jnp.exp(both[:-1] - both[-1])
        ecdf = (rank - i).astype(dtype) / jnp.maximum(t.n_tail[i], 1).astype(dtype)
        return jnp.max(jnp.where(tail, jnp.abs(cdf - ecdf), 0.0))

    D = _chunked_rows(ks, jnp.arange(cand.shape[0]))
    D = jnp.where(eligible_c & jnp.isfinite(D) & jnp.isfinite(ll), D, jnp.inf)
    best = jnp.argmin(D)
    ok = jnp.isfinite(D[best])
    i = cand[best]
    n_f = t.n_tail[i].astype(dtype)
    xmin_v = t.x[i]
    fisher = -n_f * hess[best]
    det = fisher[0, 0] * fisher[1, 1] - fisher[0, 1] * fisher[1, 0]
    good_det = det > 0
    det = jnp.where(good_det, det, 1.0)
    var_a = jnp.where(good_det, fisher[1, 1] / det, jnp.nan)
    var_l = jnp.where(good_det, fisher[0, 0] / det, jnp.nan)
    a_pl = alpha0[best]
    ll_pl = jnp.log(a_pl - 1.0) - a_pl * s1[best]
    R = n_f * (ll[best] - ll_pl)
    nan = jnp.asarray(jnp.nan, dtype)

    def pick(v):
        return jnp.where(ok, v, nan)

    return TPLFit(
        alpha=pick(alpha[best]),
        Lambda=pick(lam[best] / xmin_v),
        xmin=pick(xmin_v),
        D=pick(D[best]),
        n_tail=jnp.where(ok, t.n_tail[i], 0).astype(jnp.int32),
        sigma=pick(jnp.sqrt(jnp.maximum(var_a, 0.0))),
        sigma_Lambda=pick(jnp.sqrt(jnp.maximum(var_l, 0.0)) / xmin_v),
        loglik=pick(n_f * ll[best] - n_f * jnp.log(xmin_v)),
        R=pick(R),
        p_value=pick(erfc(jnp.sqrt(jnp.abs(R)))),
        ok=ok,
    )
