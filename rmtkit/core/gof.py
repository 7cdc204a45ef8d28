r"""Is the tail a power law at all? Goodness of fit and model comparison (docs/math.md §12).

:func:`fit_pl` fits a power law to the tail :math:`x \ge x_{\min}` of any spectrum; whether the
tail *is* one is a separate question, answered as Clauset, Shalizi & Newman (2009, "CSN") do:

- :func:`pl_pvalue`: the CSN goodness-of-fit p-value (CSN §4.1), a semi-parametric bootstrap.
  Each synthetic sample draws, value by value, from the fitted power law above :math:`x_{\min}`
  with probability :math:`n_{\rm tail}/n` and otherwise uniformly from the data below
  :math:`x_{\min}`; it is refitted by :func:`fit_pl` with the *same* xmin rule and options, and
  :math:`p` is the share of synthetic KS distances :math:`D \ge` the observed one. All
  replicates run in one compiled kernel (``jax.lax.map`` over batches of ``jax.vmap``-ed fits
  at the spectrum's padded length).
- :func:`pl_compare`: likelihood-ratio tests of the power law against the lognormal, the
  exponential, the stretched exponential (Weibull) and the truncated power law, each fitted by
  maximum likelihood on the same tail and normalised on :math:`[x_{\min}, \infty)` (CSN §5,
  Vuong 1989). ``R > 0`` favours the power law.
- :func:`tail_ccdf`: the fitted models' CCDFs on the tail, for plots.

Units: every model is written in :math:`y = x/x_{\min} \ge 1`, :math:`z = \ln y \ge 0`; a
log-likelihood in :math:`x` is the one in :math:`y` minus :math:`n_{\rm tail}\ln x_{\min}`
(the same for every model, so the ratios do not depend on the units).
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import erfc, erfcx, log_ndtr
from jax.typing import ArrayLike
from jaxtyping import Bool, Float, Int

from rmtkit.core import validate
from rmtkit.core.esd import compute_dtype, masked
from rmtkit.core.powerlaw import (
    CHUNK_ELEMENTS,
    EVALS_THRESH,
    XMIN_METHODS,
    _fit_sorted,
    _sorted_valid,
)
from rmtkit.core.tpl import _newton, log_upper_gamma

__all__ = [
    "GOF_MIN_TAIL",
    "PL_P_THRESHOLD",
    "TAIL_MODELS",
    "PowerLawComparison",
    "PowerLawPValue",
    "pl_compare",
    "pl_pvalue",
    "tail_ccdf",
]

#: fewest tail points a test is made on (fewer: NaN, ``ok`` False)
GOF_MIN_TAIL = 10
#: CSN's rule: the power law is ruled out when ``p <= PL_P_THRESHOLD`` (CSN §4.1)
PL_P_THRESHOLD = 0.1
#: the models of :func:`tail_ccdf`: the power law and its four alternatives
TAIL_MODELS = ("power_law", "lognormal", "exponential", "stretched_exp", "tpl")
#: candidate x data pairs per tile of a replicate's KS scan (cache-sized; speed only);
#: spectra of at most 256 values allow a tile of the whole square (the folded scan still
#: splits it into FOLD_BLOCKS blocks: ``rmtkit.core.powerlaw._block_size``)
BOOT_CHUNK = 1 << 16
#: ... and, for long spectra, a tile of at least this many rows of data
BOOT_MIN_ROWS = 16
#: replicate fits run side by side (``jax.lax.map`` batch)
BOOT_BATCH = 32
#: grid of ln(beta) the stretched-exponential profile likelihood is scanned on before BFGS
_LOG_BETA_GRID = (-8.0, 4.0, 49)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# The observed fit, shared by both tests.


class _Observed(NamedTuple):
    x: Array  # fitted eigenvalues, ascending, then padding 1.0
    n: Array  # how many
    start: Array  # index of xmin in x (tail = start .. n-1)
    fit: object  # the PowerLawFit


def _fit_options(xmin, xmin_method, xmin_max, thresh) -> dict:
    """The :func:`fit_pl` options the tests share (checked): the xmin rule and the threshold
    (no ``xmax``, no fingers, no confidence interval)."""
    validate.choice(xmin_method, "xmin_method", XMIN_METHODS)
    validate.finite_positive(xmin_max, "xmin_max")
    validate.positive(thresh, "thresh", allow_zero=True)
    return dict(
        xmin_method=xmin_method,
        xmin_max=None if xmin_max is None else float(xmin_max),
        thresh=float(thresh),
    )


def _fit_sorted_kw(opts: dict, xmin, chunk: int = CHUNK_ELEMENTS) -> dict:
    """Keywords of :func:`rmtkit.core.powerlaw._fit_sorted` for the options ``opts``, KS tiles
    of ``chunk`` pairs (speed only: the results do not depend on it)."""
    return dict(
        xmin=xmin,
        xmin_method=opts["xmin_method"],
        xmin_max=opts["xmin_max"],
        force=False,
        ci=None,
        chunk=chunk,
    )


def _boot_chunk(length: int) -> int:
    """Candidate x data pairs per tile of a replicate's KS scan (:data:`BOOT_CHUNK`; the whole
    square for spectra of at most 256 values): tiles that stay in cache while
    :data:`BOOT_BATCH` fits run side by side."""
    return length * length if length <= 256 else max(BOOT_CHUNK, BOOT_MIN_ROWS * length)


def _observed(x, m, xmin, opts: dict) -> _Observed:
    """The :func:`fit_pl` fit of ``(x, m)`` (its body: sort, then :func:`_fit_sorted`) and
    the sorted data it was made on."""
    xs, n, bad = _sorted_valid(x, m, opts["thresh"])
    fit = _fit_sorted(xs, n, bad, **_fit_sorted_kw(opts, xmin))
    return _Observed(xs, n, n - fit.num_pl_spikes, fit)


def _tail_ok(obs: _Observed) -> Array:
    """A test can be made: the fit succeeded and its tail has :data:`GOF_MIN_TAIL` points."""
    return jnp.isfinite(obs.fit.alpha) & (obs.fit.num_pl_spikes >= GOF_MIN_TAIL)


# ---------------------------------------------------------------------------------------------
# pl_pvalue: the CSN semi-parametric bootstrap.


class PowerLawPValue(NamedTuple):
    """Result of :func:`pl_pvalue`; array fields, so results stack under ``jax.vmap``.

    p_value : share of synthetic KS distances :math:`\\ge` the observed ``D`` (NaN when no
        test could be made, ``ok`` False).
    se : its Monte-Carlo (binomial) standard error :math:`\\sqrt{p(1-p)/B}`.
    D : the observed KS distance (of :func:`fit_pl`).
    D_boot : the ``n_boot`` synthetic KS distances (NaN for a replicate whose fit failed).
    n_valid : replicates whose fit succeeded (:math:`B`, the denominator of ``p_value``).
    alpha, xmin, n_tail : the observed fit.
    ok : the fit succeeded with at least :data:`GOF_MIN_TAIL` tail points.
    """

    p_value: Float[Array, ""]
    se: Float[Array, ""]
    D: Float[Array, ""]
    D_boot: Float[Array, " n_boot"]
    n_valid: Int[Array, ""]
    alpha: Float[Array, ""]
    xmin: Float[Array, ""]
    n_tail: Int[Array, ""]
    ok: Bool[Array, ""]


def _sorted_uniforms(spacings: Array, run: Array, last: Array) -> Array:
    r"""The order statistics of :math:`m` independent U(0, 1) draws, ascending, at the
    :math:`m` consecutive positions where ``run`` is True (other positions: unused). With
    :math:`E_1, \dots, E_{m+1}` independent Exp(1) (``spacings`` on the run, then ``last``),

    .. math:: U_{(k)} = \frac{E_1 + \dots + E_k}{E_1 + \dots + E_{m+1}}, \qquad k = 1..m,

    have the joint law of the sorted uniforms (Rényi's representation), in O(m), with no
    sort. Kept below 1 (rounding), so a transform by :math:`-\ln(1 - u)` stays finite."""
    sums = jnp.cumsum(jnp.where(run, spacings, 0.0))
    below_one = jnp.nextafter(jnp.ones((), sums.dtype), jnp.zeros((), sums.dtype))
    return jnp.minimum(sums / (sums[-1] + last), below_one)


def _sorted_synthetic(key, obs: _Observed) -> tuple[Array, Array]:
    r"""One semi-parametric bootstrap sample of ``obs`` (CSN §4.1), drawn in ascending order,
    at the padded length; returns ``(sample, bad)``.

    Each of the :math:`n` values is, with probability :math:`n_{\rm tail}/n`, a power-law
    draw :math:`x_{\min}(1-u)^{-1/(\alpha-1)}`, :math:`u \sim U[0, 1)`, and otherwise one of
    the :math:`n - n_{\rm tail}` data below :math:`x_{\min}`, drawn uniformly (index
    :math:`\lfloor u\,(n - n_{\rm tail})\rfloor`). The sample is made sorted, as the fit
    needs it: :math:`K` (binomial: a Bernoulli draw per value, from 32 random bits) values come
    from the power law, the other :math:`n - K` from the data; both maps are increasing in
    :math:`u` and every datum below :math:`x_{\min}` is below every power-law draw, so the
    sorted sample is the :math:`n - K` data at the order statistics of :math:`n - K` uniforms,
    then the power law at those of :math:`K` (:func:`_sorted_uniforms`, on disjoint runs of one
    array of exponential spacings): the law of the sorted i.i.d. sample, without its sort.
    Padding (1.0) follows. ``bad``: a draw overflowed (an alpha so close to 1 that the power
    law exceeds the float range), which fails the refit, as an infinite datum fails
    :func:`rmtkit.fit_pl`.
    """
    k_which, k_spacings, k_last = jax.random.split(key, 3)
    length = obs.x.shape[0]
    dtype = obs.x.dtype
    position = jnp.arange(length)
    # P(bits < threshold) = floor(2^32 n_tail / n) / 2^32: n_tail / n to 2^-32
    share = (obs.n - obs.start).astype(dtype) / jnp.maximum(obs.n, 1).astype(dtype)
    top = jnp.nextafter(jnp.asarray(2.0**32, dtype), jnp.zeros((), dtype))  # below 2^32
    threshold = jnp.floor(jnp.minimum(share * 2.0**32, top)).astype(jnp.uint32)
    bits = jax.random.bits(k_which, (length,), jnp.uint32)
    from_pl = (bits < threshold) & (position < obs.n)
    n_below = jnp.where(obs.start == 0, 0, obs.n - jnp.sum(from_pl))
    spacings = jax.random.exponential(k_spacings, (length,), dtype)
    last = jax.random.exponential(k_last, (2,), dtype)
    below_run = position < n_below
    u_below = _sorted_uniforms(spacings, below_run, last[0])
    u_pl = _sorted_uniforms(spacings, ~below_run & (position < obs.n), last[1])
    n_data = jnp.maximum(obs.start, 1)
    below = obs.x[jnp.minimum(jnp.floor(u_below * n_data).astype(position.dtype), n_data - 1)]
    pl = obs.fit.xmin * jnp.exp(-jnp.log1p(-u_pl) / (obs.fit.alpha - 1.0))
    sample = jnp.where(below_run, below, jnp.where(position < obs.n, pl, 1.0))
    return sample, jnp.any(~jnp.isfinite(sample))


def pl_pvalue(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    key: ArrayLike,
    n_boot: int = 2500,
    xmin: float | Float[ArrayLike, ""] | None = None,
    xmin_method: str = "search",
    xmin_max: float | None = None,
    thresh: float = EVALS_THRESH,
) -> PowerLawPValue:
    r"""CSN goodness-of-fit p-value of the power-law fit of one spectrum (docs/math.md §12).

    The tail is fitted by :func:`fit_pl` (with ``xmin``, ``xmin_method``, ``xmin_max``,
    ``thresh``), giving :math:`\hat\alpha`, :math:`x_{\min}`, :math:`n_{\rm tail}` of the
    :math:`n` fitted eigenvalues and the KS distance :math:`D`. Each of ``n_boot`` synthetic
    samples of size :math:`n` takes, value by value, a power-law draw above :math:`x_{\min}`
    with probability :math:`n_{\rm tail}/n`, else a uniform draw from the data below
    :math:`x_{\min}` (CSN's semi-parametric bootstrap), and is refitted by the *same* fit
    (the whole xmin search, or the same fixed ``xmin``) to give :math:`D_b`. Then

    .. math:: p = \frac{1}{B} \sum_b \mathbf 1[D_b \ge D], \qquad
              \mathrm{se} = \sqrt{p(1 - p)/B},

    :math:`B` the replicates whose fit succeeded. CSN rule the power law out when
    :math:`p \le 0.1`; the p-value is uniform on [0, 1] when the tail is a power law, and
    ``n_boot`` = 2500 gives it to :math:`\pm 0.01`. Each sample is drawn in ascending order
    (the same law; its refit skips the sort), and all replicates are refitted in one compiled
    kernel (:data:`BOOT_BATCH` ``vmap``-ed fits at a time).

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one matrix (any order); ``jax.vmap`` for a batch.
    mask : bool array, shape (n,), optional
        ``False`` marks padding. Default: all ``True``.
    key : jax.random key
        Randomness of the bootstrap; replicate ``b`` uses ``jax.random.fold_in(key, b)``, so
        the replicates of a run are the first ones of any longer run with the same key.
    n_boot : int, default 2500
        Number of synthetic samples :math:`B` (static: one compile per value).
    xmin, xmin_method, xmin_max, thresh :
        The options of :func:`fit_pl` (``xmax`` and ``fix_fingers`` are not supported: the
        bootstrap's model is the power law on :math:`[x_{\min}, \infty)`).

    Returns
    -------
    PowerLawPValue
        ``p_value``, ``se``, ``D``, ``D_boot``, ``n_valid``, ``alpha``, ``xmin``, ``n_tail``,
        ``ok``. A failed fit, or a tail of fewer than :data:`GOF_MIN_TAIL` values, gives NaN
        ``p_value`` and ``se`` and ``ok`` False: never a p-value.

    Raises
    ------
    InvalidArgumentError
        ``n_boot`` not an integer >= 1, or a bad fit option.

    References
    ----------
    .. [1] Clauset, Shalizi, Newman, SIAM Review 51 (2009) 661, §4.1.
       :doi:`10.1137/070710111`

    Examples
    --------
    >>> x = jax.random.pareto(jax.random.key(0), 1.5, (500,))  # a power law, alpha 2.5, xmin 1
    >>> res = rmtkit.pl_pvalue(x, key=jax.random.key(1), n_boot=100)
    >>> bool(res.p_value > 0.1), int(res.n_valid)
    (True, 100)
    """
    x, m = masked(evals, mask)
    validate.positive(n_boot, "n_boot", integer=True)
    key = validate.key(key)
    opts = _fit_options(xmin, xmin_method, xmin_max, thresh)
    x = x.astype(compute_dtype(x.dtype))
    xmin = None if xmin is None else jnp.asarray(xmin, x.dtype)
    return _pl_pvalue(x, m, key, xmin, n_boot=int(n_boot), opts=tuple(sorted(opts.items())))


@functools.partial(jax.jit, static_argnames=("n_boot", "opts"))
def _pl_pvalue(x, m, key, xmin, *, n_boot, opts) -> PowerLawPValue:
    """:func:`pl_pvalue` on validated inputs, compiled once per shape, ``n_boot`` and options:
    the observed fit, then its bootstrap (:func:`_pvalue`)."""
    opts = dict(opts)
    return _pvalue(_observed(x, m, xmin, opts), key, xmin, n_boot=n_boot, opts=opts)


def _pvalue(obs: _Observed, key, xmin, *, n_boot: int, opts: dict) -> PowerLawPValue:
    """The bootstrap of the observed fit ``obs``: ``jax.lax.map`` over batches of
    :data:`BOOT_BATCH` ``vmap``-ed replicates, each a sorted synthetic sample
    (:func:`_sorted_synthetic`) refitted by the body of :func:`fit_pl` (without its sort)."""
    batch = min(BOOT_BATCH, n_boot)
    steps = -(-n_boot // batch)
    # replicate b draws from fold_in(key, b), so a shorter run is a prefix of a longer one;
    # the last batch is padded with replicates dropped below
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(steps * batch))
    fit_kw = _fit_sorted_kw(opts, xmin, _boot_chunk(obs.x.shape[0]))

    def replicate(k):
        sample, bad = _sorted_synthetic(k, obs)
        return _fit_sorted(sample, obs.n, bad, **fit_kw).D

    ds = jax.lax.map(jax.vmap(replicate), keys.reshape(steps, batch))
    d_boot = ds.reshape(-1)[:n_boot]
    fit = obs.fit
    ok = _tail_ok(obs)
    valid = jnp.isfinite(d_boot) & ok
    b = jnp.sum(valid)
    b_f = jnp.maximum(b, 1).astype(obs.x.dtype)
    p = jnp.sum(valid & (d_boot >= fit.D)) / b_f
    se = jnp.sqrt(p * (1.0 - p) / b_f)
    good = ok & (b > 0)
    nan = jnp.asarray(jnp.nan, obs.x.dtype)
    return PowerLawPValue(
        p_value=jnp.where(good, p, nan),
        se=jnp.where(good, se, nan),
        D=fit.D,
        D_boot=jnp.where(valid, d_boot, nan),
        n_valid=b,
        alpha=fit.alpha,
        xmin=fit.xmin,
        n_tail=fit.num_pl_spikes,
        ok=good,
    )


# ---------------------------------------------------------------------------------------------
# The alternatives: maximum likelihood on the tail, pointwise log-likelihoods in y = x/xmin.


class _Tail(NamedTuple):
    z: Array  # ln(x / xmin) on the tail, 0 elsewhere
    on: Array  # tail mask
    n: Array  # tail size (float)


def _mean(v, tail: _Tail):
    return jnp.sum(jnp.where(tail.on, v, 0.0)) / tail.n


def _pl_loglik(tail: _Tail):
    r"""Power-law MLE on the tail, :math:`\hat\alpha = 1 + n/\sum z`, and its pointwise
    log-likelihoods :math:`\ln(\alpha - 1) - \alpha z_i`."""
    alpha = 1.0 + 1.0 / _mean(tail.z, tail)
    return alpha, jnp.log(alpha - 1.0) - alpha * tail.z


def _exp_loglik(tail: _Tail):
    r"""Exponential :math:`p(x) = \lambda e^{-\lambda(x - x_{\min})}`: closed-form MLE
    :math:`L = \lambda x_{\min} = 1/\overline{(y - 1)}`; pointwise :math:`\ln L - L(y_i - 1)`."""
    ym1 = jnp.expm1(tail.z)
    big_l = 1.0 / _mean(ym1, tail)
    return big_l, jnp.log(big_l) - big_l * ym1


def _log_phi_scaled(t):
    r""":math:`\ln(\Phi(t)\, e^{t^2/2})`, stable for every t: ``erfcx`` below 0 (no
    cancellation of :math:`t^2/2` as :math:`t \to -\infty`), ``log_ndtr`` above."""
    neg = t < 0.0
    t_neg = jnp.where(neg, t, -1.0)
    t_pos = jnp.where(neg, 1.0, t)
    below = jnp.log(0.5 * erfcx(-t_neg / math.sqrt(2.0)))
    above = log_ndtr(t_pos) + 0.5 * t_pos * t_pos
    return jnp.where(neg, below, above)


def _lognormal_pointwise(theta, z):
    r"""Pointwise log-likelihoods (in y) of the lognormal truncated to :math:`[x_{\min},
    \infty)`, in the parameters :math:`\theta = (\eta, v)`: :math:`\eta = m/\sigma^2`,
    :math:`w = e^v = 1/\sigma`, :math:`m = \mu - \ln x_{\min}`, :math:`t = m/\sigma = \eta/w`:

    .. math:: \ell_i = -z_i + v - \tfrac12\ln 2\pi - \tfrac12 w^2 z_i^2 + \eta z_i
              - \ln\big(\Phi(t)\, e^{t^2/2}\big).

    As :math:`w \to 0` with :math:`\eta < 0` this tends to the power law with
    :math:`\alpha = 1 - \eta` (the lognormal family's closure contains it)."""
    eta, v = theta[0], theta[1]
    w = jnp.exp(v)
    return -z + v - _HALF_LOG_2PI - 0.5 * w * w * z * z + eta * z - _log_phi_scaled(eta / w)


def _lognormal_mean_loglik(theta, z1, z2):
    r"""Mean of :func:`_lognormal_pointwise` over the tail from its sufficient statistics
    :math:`\bar z` (``z1``) and :math:`\overline{z^2}` (``z2``): O(1) per evaluation."""
    eta, v = theta[0], theta[1]
    w = jnp.exp(v)
    return -z1 + v - _HALF_LOG_2PI - 0.5 * w * w * z2 + eta * z1 - _log_phi_scaled(eta / w)


def _log_mean_growth(log_beta, tail: _Tail):
    r""":math:`\ln \overline{(y^\beta - 1)}` over the tail and the scaled terms
    :math:`t_i = e^{\beta z_i - m}(1 - e^{-\beta z_i}) = (y_i^\beta - 1)e^{-m}`,
    :math:`m = \max \beta z`: no overflow for large :math:`\beta z`, no cancellation for small."""
    bz = jnp.exp(log_beta) * tail.z
    m = jnp.max(jnp.where(tail.on, bz, 0.0))
    terms = jnp.exp(bz - m) * -jnp.expm1(-bz)
    return jnp.log(_mean(terms, tail)) + m, terms


def _stretched_profile(log_beta, tail: _Tail):
    r"""Profile log-likelihood (mean, in y) of the stretched exponential
    :math:`p(x) \propto (\lambda x)^{\beta-1} e^{-(\lambda x)^\beta}` on :math:`[x_{\min},
    \infty)`: with :math:`u = (\lambda x_{\min})^\beta`, the MLE at fixed :math:`\beta` is
    :math:`\hat u = 1/\overline{(y^\beta - 1)}`, leaving

    .. math:: \bar\ell(\beta) = \ln\beta - \ln\overline{(y^\beta - 1)} + (\beta - 1)\bar z - 1.

    As :math:`\beta \to 0` the law tends to the power law (the profile to its likelihood).
    """
    log_mean, _ = _log_mean_growth(log_beta, tail)
    return log_beta - log_mean + (jnp.exp(log_beta) - 1.0) * _mean(tail.z, tail) - 1.0


def _stretched_pointwise(log_beta, tail: _Tail):
    r""":math:`(\beta, \ln\hat u)` and the pointwise log-likelihoods (in y)
    :math:`\ln\beta + \ln u + (\beta - 1) z_i - u (y_i^\beta - 1)` at :math:`\hat u(\beta)`."""
    log_mean, terms = _log_mean_growth(log_beta, tail)
    beta = jnp.exp(log_beta)
    pointwise = log_beta - log_mean + (beta - 1.0) * tail.z - terms / _mean(terms, tail)
    return (beta, -log_mean), pointwise


def _minimise(objective, x0):
    """``optimistix.BFGS`` (backtracking Armijo line search) from ``x0``; the start is kept
    when the result is worse or not finite. optimistix is imported here, on first use."""
    import optimistix as optx

    solver = optx.BFGS(rtol=1e-10, atol=1e-10)
    sol = optx.minimise(lambda p, _: objective(p), solver, x0, throw=False, max_steps=256)
    f0, f1 = objective(x0), objective(sol.value)
    better = jnp.isfinite(f1) & jnp.all(jnp.isfinite(sol.value)) & (f1 <= f0)
    return jnp.where(better, sol.value, x0)


#: box of the lognormal's ln(1/sigma) (tail units) and of the stretched exponential's ln(beta)
#: inside the objectives, so no trial point of the line search overflows
_V_BOX, _LOG_BETA_BOX = (-30.0, 30.0), (-20.0, 6.0)


def _numerical_mles(tail: _Tail, alpha_pl):
    r"""The two numerical MLEs, by BFGS (``optimistix``, a well-kept JAX optimiser).

    Lognormal: :math:`(\eta, v = \ln w)` of :func:`_lognormal_mean_loglik` (a function of
    :math:`\bar z, \overline{z^2}` only). The log-likelihood is concave in the natural
    parameters :math:`(\eta, -w^2/2)` (a truncated exponential family), so its maximum is
    unique; BFGS starts from the moment estimate of the untruncated law, from a point near
    the power-law limit and from one between, and the best result is kept. Stretched
    exponential: :math:`\ln\beta` of the profile :func:`_stretched_profile`, from the best
    point of a grid of :math:`\ln\beta \in [-8, 4]`. Returns ``((eta, v), log_beta)``.
    """
    z1 = _mean(tail.z, tail)
    z2 = _mean(tail.z * tail.z, tail)
    sd = jnp.sqrt(jnp.maximum(z2 - z1 * z1, 1e-12))

    def f_ln(theta):
        theta = jnp.stack([theta[0], jnp.clip(theta[1], *_V_BOX)])
        return -_lognormal_mean_loglik(theta, z1, z2)

    def f_se(lb):
        return -_stretched_profile(jnp.clip(lb[0], *_LOG_BETA_BOX), tail)

    moments = jnp.stack([z1 / sd**2, -jnp.log(sd)])
    near_pl = jnp.stack([1.0 - alpha_pl, -jnp.log(sd) - 3.0])
    between = jnp.stack([1.0 - alpha_pl, -jnp.log(sd)])
    starts = jnp.stack([moments, near_pl, between])
    thetas = jax.vmap(lambda s: _minimise(f_ln, s))(starts)
    values = jax.vmap(f_ln)(thetas)
    theta = thetas[jnp.argmin(jnp.where(jnp.isfinite(values), values, jnp.inf))]
    theta = jnp.stack([theta[0], jnp.clip(theta[1], *_V_BOX)])

    grid = jnp.linspace(*_LOG_BETA_GRID)
    prof = jax.vmap(lambda lb: _stretched_profile(lb, tail))(grid)
    lb0 = grid[jnp.argmax(jnp.where(jnp.isfinite(prof), prof, -jnp.inf))]
    log_beta = jnp.clip(_minimise(f_se, lb0[None])[0], *_LOG_BETA_BOX)
    return theta, log_beta


class _TPL(NamedTuple):
    alpha: Array
    big_l: Array  # Lambda * xmin
    mean_ll: Array  # mean log-likelihood in y
    ok: Array


def _tpl_loglik(tail: _Tail, alpha_pl) -> _TPL:
    r"""Truncated-power-law MLE on the tail: the damped Newton maximisation of
    :func:`rmtkit.fit_tpl` at this xmin (docs/math.md §3), from the power law's
    :math:`\hat\alpha` and :math:`L_0 = 1/\bar y`, on the sufficient statistics
    :math:`\bar z, \bar y`. The model nests the power law (:math:`\Lambda = 0`)."""
    s1 = _mean(tail.z, tail)
    s2 = _mean(jnp.exp(tail.z), tail)
    theta, mean_ll, _ = _newton(s1, s2, alpha_pl)
    return _TPL(theta[0], theta[1], mean_ll, jnp.isfinite(mean_ll))


def _vuong(ll_pl, ll_alt, tail: _Tail):
    r"""Normalised log-likelihood ratio and its two-sided p-value (Vuong 1989; CSN eq. 5.5):
    :math:`d_i = \ell^{\rm PL}_i - \ell^{\rm alt}_i`, :math:`\mathcal R = \sum d_i`,
    :math:`\hat\sigma^2 = \overline{(d - \bar d)^2}`, ``R`` = :math:`\mathcal R /
    (\hat\sigma\sqrt n)`, :math:`p = \mathrm{erfc}(|R|/\sqrt 2)`. Identical models
    (:math:`\hat\sigma = 0`) give ``R`` = 0, p = 1."""
    d = jnp.where(tail.on, ll_pl - ll_alt, 0.0)
    total = jnp.sum(d)
    dbar = total / tail.n
    var = _mean((d - dbar) ** 2, tail)
    scale = jnp.sqrt(tail.n * var)
    same = scale <= 0.0
    r = jnp.where(same, 0.0, total / jnp.where(same, 1.0, scale))
    return r, erfc(jnp.abs(r) / math.sqrt(2.0))


class PowerLawComparison(NamedTuple):
    """Result of :func:`pl_compare`; 0-d array fields, so results stack under ``jax.vmap``.

    Sign convention of CSN Table 6.2: ``R > 0`` favours the power law, ``R < 0`` the
    alternative; a small ``p`` says the sign is significant.

    R_lognormal, R_exponential, R_stretched_exp : Vuong's normalised log-likelihood ratio
        :math:`\\mathcal R/(\\hat\\sigma\\sqrt{n})` (asymptotically N(0, 1) when neither model
        is closer); ``p_*`` = :math:`\\mathrm{erfc}(|R|/\\sqrt2)`, two-sided.
    R_tpl : :math:`\\ell_{\\rm PL} - \\ell_{\\rm TPL}` (not normalised: the power law is nested
        in the TPL, so :math:`R \\le 0`); ``p_tpl`` = :math:`1 - \\chi^2_1(2|R|)`.
    alpha, xmin, n_tail : the power law compared: the MLE :math:`1 + n/\\sum\\ln(x/x_{\\min})`
        at the xmin of :func:`fit_pl`.
    mu, sigma : the lognormal (:math:`\\ln x \\sim N(\\mu, \\sigma^2)`, truncated).
    Lambda_exp : the exponential's rate :math:`\\lambda`.
    beta, Lambda_se : the stretched exponential :math:`(\\lambda x)^{\\beta-1}
        e^{-(\\lambda x)^\\beta}` (``Lambda_se`` is its :math:`\\lambda`).
    alpha_tpl, Lambda_tpl : the truncated power law :math:`x^{-\\alpha} e^{-\\Lambda x}`.
    loglik_* : the maximised log-likelihoods (in the units of x).
    ok : the fit succeeded with at least :data:`GOF_MIN_TAIL` tail points (else NaN fields).
    """

    R_lognormal: Float[Array, ""]
    p_lognormal: Float[Array, ""]
    R_exponential: Float[Array, ""]
    p_exponential: Float[Array, ""]
    R_stretched_exp: Float[Array, ""]
    p_stretched_exp: Float[Array, ""]
    R_tpl: Float[Array, ""]
    p_tpl: Float[Array, ""]
    alpha: Float[Array, ""]
    xmin: Float[Array, ""]
    n_tail: Int[Array, ""]
    mu: Float[Array, ""]
    sigma: Float[Array, ""]
    Lambda_exp: Float[Array, ""]
    beta: Float[Array, ""]
    Lambda_se: Float[Array, ""]
    alpha_tpl: Float[Array, ""]
    Lambda_tpl: Float[Array, ""]
    loglik_pl: Float[Array, ""]
    loglik_lognormal: Float[Array, ""]
    loglik_exponential: Float[Array, ""]
    loglik_stretched_exp: Float[Array, ""]
    loglik_tpl: Float[Array, ""]
    ok: Bool[Array, ""]


def pl_compare(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    xmin: float | Float[ArrayLike, ""] | None = None,
    xmin_method: str = "search",
    xmin_max: float | None = None,
    thresh: float = EVALS_THRESH,
) -> PowerLawComparison:
    r"""Likelihood-ratio tests of the power-law tail against four alternatives (docs/math.md §12).

    On the tail :math:`x \ge x_{\min}` of the :func:`fit_pl` fit (same options), with
    :math:`y = x/x_{\min}`, :math:`z = \ln y`, each model is normalised on
    :math:`[x_{\min}, \infty)` and fitted by maximum likelihood (CSN Table 2.1):

    ============== ====================================================== =====================
    power law      :math:`(\alpha-1)x_{\min}^{\alpha-1} x^{-\alpha}`        closed form
    exponential    :math:`\lambda e^{-\lambda(x - x_{\min})}`              closed form
    stretched exp. :math:`\beta\lambda^\beta x^{\beta-1}
                   e^{-\lambda^\beta(x^\beta - x_{\min}^\beta)}`           profile in
                                                                           :math:`\beta`, BFGS
    lognormal      :math:`\frac{\sqrt{2/\pi\sigma^2}}{\mathrm{erfc}((\ln
                   x_{\min}-\mu)/\sqrt2\sigma)} \frac1x
                   e^{-(\ln x-\mu)^2/2\sigma^2}`                          BFGS, natural params
    truncated PL   :math:`\frac{\Lambda^{1-\alpha}}{\Gamma(1-\alpha,
                   \Lambda x_{\min})} x^{-\alpha}e^{-\Lambda x}`           Newton (fit_tpl's)
    ============== ====================================================== =====================

    The numerical MLEs use ``optimistix.BFGS``, not a hand-written loop.
    For the non-nested alternatives, Vuong's test (CSN §5.1): with
    :math:`d_i = \ln p_{\rm PL}(x_i) - \ln p_{\rm alt}(x_i)`,

    .. math:: R = \frac{\sum_i d_i}{\hat\sigma_d\sqrt{n}}, \qquad
              p = \mathrm{erfc}\big(|R|/\sqrt2\big);

    for the truncated power law, which nests the power law, :math:`R = \sum_i d_i` and
    :math:`p = 1 - \chi^2_1(2|R|)`. ``R > 0`` favours the power law (CSN's sign).

    Parameters
    ----------
    evals : array, shape (n,)
        Eigenvalues of one matrix (any order); ``jax.vmap`` for a batch.
    mask : bool array, shape (n,), optional
        ``False`` marks padding. Default: all ``True``.
    xmin, xmin_method, xmin_max, thresh :
        The options of :func:`fit_pl` that choose the tail.

    Returns
    -------
    PowerLawComparison
        NaN fields and ``ok`` False when the fit failed or its tail has fewer than
        :data:`GOF_MIN_TAIL` values.

    References
    ----------
    .. [1] Clauset, Shalizi, Newman, SIAM Review 51 (2009) 661, §5. :doi:`10.1137/070710111`
    .. [2] Vuong, Econometrica 57 (1989) 307. :doi:`10.2307/1912557`

    Examples
    --------
    >>> x = 1.0 + jax.random.exponential(jax.random.key(0), (2000,))  # exponential from 1
    >>> res = rmtkit.pl_compare(x, xmin=1.0)
    >>> bool(res.R_exponential < -3), bool(res.p_exponential < 1e-3)
    (True, True)
    """
    x, m = masked(evals, mask)
    opts = _fit_options(xmin, xmin_method, xmin_max, thresh)
    x = x.astype(compute_dtype(x.dtype))
    xmin = None if xmin is None else jnp.asarray(xmin, x.dtype)
    return _pl_compare(x, m, xmin, opts=tuple(sorted(opts.items())))


@functools.partial(jax.jit, static_argnames=("opts",))
def _pl_compare(x, m, xmin, *, opts) -> PowerLawComparison:
    return _compare(_observed(x, m, xmin, dict(opts)))


def _compare(obs: _Observed) -> PowerLawComparison:
    """The tests of :func:`pl_compare` on the tail of the observed fit ``obs``."""
    x = obs.x
    ok = _tail_ok(obs)
    rank = jnp.arange(obs.x.shape[0])
    on = (rank >= obs.start) & (rank < obs.n) & ok
    x0 = jnp.where(ok, obs.fit.xmin, 1.0)
    z = jnp.where(on, jnp.log(jnp.where(on, obs.x, x0) / x0), 0.0)
    tail = _Tail(z, on, jnp.maximum(jnp.sum(on), 1).astype(x.dtype))

    alpha, ll_pl = _pl_loglik(tail)
    big_l, ll_exp = _exp_loglik(tail)
    theta, log_beta = _numerical_mles(tail, alpha)
    ll_ln = _lognormal_pointwise(theta, tail.z)
    (beta, log_u), ll_se = _stretched_pointwise(log_beta, tail)
    tpl = _tpl_loglik(tail, alpha)

    r_ln, p_ln = _vuong(ll_pl, ll_ln, tail)
    r_exp, p_exp = _vuong(ll_pl, ll_exp, tail)
    r_se, p_se = _vuong(ll_pl, ll_se, tail)
    shift = tail.n * jnp.log(x0)  # log-likelihoods in y -> in x

    def total(ll):
        return jnp.sum(jnp.where(on, ll, 0.0)) - shift

    eta, w = theta[0], jnp.exp(theta[1])
    nan = jnp.asarray(jnp.nan, x.dtype)

    def pick(v, good=ok):
        return jnp.where(good, v, nan)

    def pick_tpl(v):
        return pick(v, ok & tpl.ok)

    r_tpl = tail.n * (_mean(ll_pl, tail) - tpl.mean_ll)  # <= 0: the PL is nested

    return PowerLawComparison(
        R_lognormal=pick(r_ln),
        p_lognormal=pick(p_ln),
        R_exponential=pick(r_exp),
        p_exponential=pick(p_exp),
        R_stretched_exp=pick(r_se),
        p_stretched_exp=pick(p_se),
        R_tpl=pick_tpl(r_tpl),
        p_tpl=pick_tpl(erfc(jnp.sqrt(jnp.abs(r_tpl)))),
        alpha=pick(alpha),
        xmin=pick(x0),
        n_tail=jnp.where(ok, obs.fit.num_pl_spikes, 0),
        mu=pick(eta / (w * w) + jnp.log(x0)),
        sigma=pick(1.0 / w),
        Lambda_exp=pick(big_l / x0),
        beta=pick(beta),
        Lambda_se=pick(jnp.exp(log_u / beta) / x0),
        alpha_tpl=pick_tpl(tpl.alpha),
        Lambda_tpl=pick_tpl(tpl.big_l / x0),
        loglik_pl=pick(total(ll_pl)),
        loglik_lognormal=pick(total(ll_ln)),
        loglik_exponential=pick(total(ll_exp)),
        loglik_stretched_exp=pick(total(ll_se)),
        loglik_tpl=pick_tpl(tail.n * tpl.mean_ll - shift),
        ok=ok,
    )


# ---------------------------------------------------------------------------------------------
# CCDFs of the fitted models, for plots.


def tail_ccdf(
    x: Float[ArrayLike, " k"], comparison: PowerLawComparison, model: str = "power_law"
) -> Float[Array, " k"]:
    r""":math:`P(X \ge x \mid X \ge x_{\min})` of a model fitted by :func:`pl_compare`.

    ``model`` is one of :data:`TAIL_MODELS`; with :math:`z = \ln(x/x_{\min})`: power law
    :math:`e^{(1-\alpha)z}`; exponential :math:`e^{-\lambda(x-x_{\min})}`; stretched exponential
    :math:`e^{-(\lambda x)^\beta + (\lambda x_{\min})^\beta}`; lognormal
    :math:`\Phi((\mu - \ln x)/\sigma)/\Phi((\mu - \ln x_{\min})/\sigma)` (computed without
    cancellation near the power-law limit); truncated power law
    :math:`\Gamma(1-\alpha, \Lambda x)/\Gamma(1-\alpha, \Lambda x_{\min})`. NaN below
    :math:`x_{\min}` and where ``comparison`` is not ``ok``.

    Examples
    --------
    >>> x = 1.0 + jax.random.exponential(jax.random.key(0), (2000,))
    >>> cmp = rmtkit.pl_compare(x, xmin=1.0)
    >>> ccdf = rmtkit.tail_ccdf(cmp.xmin + jnp.array([0.0, 1.0]), cmp, "exponential")
    >>> [round(float(c), 1) for c in ccdf]  # exp(-lambda) with lambda ~ 1
    [1.0, 0.4]
    """
    validate.choice(model, "model", TAIL_MODELS)
    c = comparison
    x = jnp.asarray(x, dtype=c.xmin.dtype)
    xmin = c.xmin
    above = x >= xmin
    z = jnp.log(jnp.where(above, x, xmin) / xmin)
    if model == "power_law":
        log_s = (1.0 - c.alpha) * z
    elif model == "exponential":
        log_s = -c.Lambda_exp * xmin * jnp.expm1(z)
    elif model == "stretched_exp":
        log_s = -((c.Lambda_se * xmin) ** c.beta) * jnp.expm1(c.beta * z)
    elif model == "lognormal":
        w = 1.0 / c.sigma
        eta = (c.mu - jnp.log(xmin)) * w * w
        t0 = eta / w
        log_s = _log_phi_scaled(t0 - z * w) - _log_phi_scaled(t0) + eta * z - 0.5 * (z * w) ** 2
    else:
        s = 1.0 - c.alpha_tpl
        top = log_upper_gamma(
            jnp.broadcast_to(s, x.shape), c.Lambda_tpl * jnp.where(above, x, xmin)
        )
        # log_upper_gamma computes in float64 when x64 is on: back to the comparison's dtype
        log_s = (top - log_upper_gamma(s, c.Lambda_tpl * xmin)).astype(x.dtype)
    return jnp.where(above & c.ok, jnp.exp(log_s), jnp.nan)
