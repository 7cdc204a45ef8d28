r"""Scale and shape metrics of one layer's spectrum (docs/math.md §4).

All are functions of the same eigenvalues :math:`\lambda_i` (raw units, see :mod:`rmtkit.esd`)
and, for the alpha-based ones, of the power-law exponent :math:`\alpha` of :func:`fit_pl`.
Every function takes an optional boolean ``mask`` (``False`` = padding), so ragged spectra
batch under ``jax.vmap``.

==================== ===========================================================
``lambda_max``       :math:`\max_i \lambda_i` (= ``spectral_norm``)
``norm``             :math:`\sum_i \lambda_i = \lVert W \rVert_F^2`
``log_norm``         :math:`\log_{10} \sum_i \lambda_i`
``log_spectral_norm`` :math:`\log_{10} \lambda_{\max}`
``stable_rank``      :math:`\sum_i \lambda_i / \lambda_{\max}`
``alpha_weighted``   :math:`\alpha \log_{10} \lambda_{\max}` (alpha-hat)
``log_alpha_norm``   :math:`\log_{10} \sum_i \lambda_i^{\alpha}` (all eigenvalues)
``entropy``          :math:`-\sum_i p_i \ln p_i / \ln R`, :math:`p_i = \lambda_i / \sum\lambda`,
                     :math:`R` = ``matrix_rank``
``matrix_rank``      :math:`\#\{s_i > s_{\max} N \epsilon_{64}\}`, :math:`s_i = \sqrt{\lambda_i}`
``weak_rank_loss``   :math:`\#\{\lambda_i < 10^{-6}\}`
==================== ===========================================================
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Bool, Float, Int

from rmtkit.core.esd import masked
from rmtkit.errors import RowWarning

#: eigenvalues below this count as lost rank (``weak_rank_loss``, WW)
WEAK_RANK_TOL = 1e-6
#: machine epsilon of float64, the tolerance unit of ``matrix_rank`` (numpy's rank rule)
EPS64 = float(np.finfo(np.float64).eps)


class SpectralMetrics(NamedTuple):
    """All docs/math.md §4 scale and shape metrics of one spectrum (0-d arrays)."""

    lambda_max: Float[Array, ""]
    norm: Float[Array, ""]
    log_norm: Float[Array, ""]
    log_spectral_norm: Float[Array, ""]
    stable_rank: Float[Array, ""]
    alpha_weighted: Float[Array, ""]
    log_alpha_norm: Float[Array, ""]
    entropy: Float[Array, ""]
    matrix_rank: Int[Array, ""]
    rank_loss: Int[Array, ""]
    weak_rank_loss: Int[Array, ""]
    num_evals: Int[Array, ""]


def _spectrum(evals, mask) -> tuple[Array, Array]:
    """``masked(evals, mask)`` with the NaN rule of this module: one valid NaN or infinite
    eigenvalue makes the whole spectrum NaN (a broken matrix must not yield a number)."""
    x, m = masked(evals, mask)
    bad = jnp.any(m & ~jnp.isfinite(x))
    return jnp.where(bad, jnp.nan, x), m


def _log10_pos(v):
    r""":math:`\log_{10} v` for :math:`v > 0`, NaN otherwise (a zero norm has no log scale)."""
    ok = v > 0
    return jnp.where(ok, jnp.log10(jnp.where(ok, v, 1.0)), jnp.nan)


def _scaled(x, m, top):
    r"""``(x_i 2^{-e}, e)`` on valid entries (0 elsewhere), :math:`2^{e-1} \le \lambda_{\max}
    < 2^e`: the overflow-free form used where a plain sum of eigenvalues exceeds the float
    range. Scaling by a power of two is exact (a division by :math:`\lambda_{\max}` is not
    on a CPU that flushes its reciprocal to zero)."""
    _, e = jnp.frexp(jnp.where(jnp.isfinite(top) & (top > 0), top, 1.0))
    return jnp.where(m, jnp.ldexp(x, -e), 0.0), e


def lambda_max(evals: Float[ArrayLike, " n"], mask: Bool[ArrayLike, " n"] | None = None):
    r"""Largest eigenvalue :math:`\lambda_{\max} = \lVert W \rVert_2^2` (WW ``spectral_norm``).

    NaN when no eigenvalue is valid (all masked) or one is NaN / infinite.
    """
    x, m = _spectrum(evals, mask)
    return jnp.where(jnp.any(m), jnp.max(jnp.where(m, x, -jnp.inf)), jnp.nan)


def norm(evals: Float[ArrayLike, " n"], mask: Bool[ArrayLike, " n"] | None = None):
    r"""Squared Frobenius norm :math:`\sum_i \lambda_i = \lVert W \rVert_F^2` (WW ``norm``).

    The one metric that can be infinite: when the sum exceeds the float range.
    """
    x, m = _spectrum(evals, mask)
    return jnp.sum(jnp.where(m, x, 0.0))


def log_norm(evals, mask=None):
    r""":math:`\log_{10} \sum_i \lambda_i` (WW ``log_norm``); finite even when the sum
    overflows, NaN for a zero spectrum."""
    x, m = _spectrum(evals, mask)
    total = norm(x, m)
    scaled, e = _scaled(x, m, lambda_max(x, m))
    rescaled = _log10_pos(jnp.sum(scaled)) + e.astype(x.dtype) * jnp.log10(
        jnp.asarray(2.0, x.dtype)
    )
    return jnp.where(jnp.isposinf(total), rescaled, _log10_pos(total))


def log_spectral_norm(evals, mask=None):
    r""":math:`\log_{10} \lambda_{\max}` (WW ``log_spectral_norm``); NaN for a zero spectrum."""
    return _log10_pos(lambda_max(evals, mask))


def stable_rank(evals, mask=None):
    r"""Stable rank :math:`\sum_i \lambda_i / \lambda_{\max}
    = \lVert W\rVert_F^2 / \lVert W\rVert_2^2` (NaN for a zero spectrum)."""
    x, m = _spectrum(evals, mask)
    total, top = norm(x, m), lambda_max(x, m)
    safe_top = jnp.where(top > 0, top, 1.0)
    scaled, e = _scaled(x, m, top)
    ratio = jnp.where(
        jnp.isposinf(total), jnp.sum(scaled) / jnp.ldexp(safe_top, -e), total / safe_top
    )
    return jnp.where(top > 0, _no_inf(ratio), jnp.nan)  # inf: huge negative "eigenvalues"


def _no_inf(v):
    """NaN where ``v`` is infinite: a product with an absurd alpha (> ~1e306) overflows."""
    return jnp.where(jnp.isinf(v), jnp.nan, v)


def _finite_alpha(alpha, dtype=None):
    """``alpha`` as an array; NaN when it is not finite."""
    alpha = jnp.asarray(alpha, dtype)
    return jnp.where(jnp.isfinite(alpha), alpha, jnp.nan)


def alpha_weighted(evals, alpha: Float[ArrayLike, ""], mask=None):
    r"""Alpha-hat :math:`\hat\alpha = \alpha \log_{10} \lambda_{\max}` (Martin & Mahoney 2021).

    NaN when ``alpha`` is NaN or infinite (or so large that the product overflows)."""
    x, m = _spectrum(evals, mask)
    return _no_inf(_finite_alpha(alpha) * log_spectral_norm(x, m))


def log_alpha_norm(evals, alpha: Float[ArrayLike, ""], mask=None):
    r"""Schatten alpha-norm :math:`\log_{10} \sum_i \lambda_i^{\alpha}` over all eigenvalues.

    Computed as :math:`\alpha \log_{10}\lambda_{\max} + \log_{10}\sum_i
    (\lambda_i/\lambda_{\max})^\alpha`, which does not overflow for large alpha (and, should
    the sum overflow all the same, e.g. for a negative alpha, by a log-sum-exp). NaN for a
    zero spectrum or a non-finite alpha.
    """
    x, m = _spectrum(evals, mask)
    alpha = _finite_alpha(alpha, x.dtype)
    top = lambda_max(x, m)
    pos = m & (x > 0)
    ratio = jnp.where(pos, x / jnp.where(top > 0, top, 1.0), 1.0)
    powered = jnp.where(pos, ratio**alpha, 0.0)
    direct = alpha * _log10_pos(top) + _log10_pos(jnp.sum(powered))
    logs = jnp.where(pos, alpha * jnp.log(ratio), -jnp.inf)
    stable = alpha * _log10_pos(top) + jax.nn.logsumexp(logs) / jnp.log(10.0)
    return _no_inf(jnp.where(jnp.isposinf(jnp.sum(powered)) & jnp.any(pos), stable, direct))


def matrix_rank(evals, n_rows: int | ArrayLike, mask=None):
    r"""Numerical rank :math:`\#\{s_i > s_{\max} N \epsilon_{64}\}`, :math:`s_i = \sqrt{\lambda_i}`.

    ``n_rows`` is :math:`N`, the larger side of the matrix (numpy's ``matrix_rank`` rule).
    """
    x, m = masked(evals, mask)
    svals = jnp.sqrt(jnp.where(m, jnp.maximum(x, 0.0), 0.0))
    tol = jnp.max(svals) * jnp.asarray(n_rows, svals.dtype) * EPS64
    return jnp.sum(m & (svals > tol))


def weak_rank_loss(evals, mask=None, *, tol: float = WEAK_RANK_TOL):
    r"""Number of eigenvalues below ``tol`` (1e-6): :math:`\#\{\lambda_i < 10^{-6}\}`."""
    x, m = masked(evals, mask)
    return jnp.sum(m & (x < tol))


def entropy(evals, n_rows: int | ArrayLike, mask=None):
    r"""Matrix entropy :math:`-\sum_i p_i \ln p_i / \ln R \in [0, 1]`.

    :math:`p_i = \lambda_i / \sum_j \lambda_j` and :math:`R` is :func:`matrix_rank`. 1 for a
    flat spectrum (all variance spread evenly), near 0 when one direction dominates. NaN when
    :math:`R \le 1`.
    """
    x, m = _spectrum(evals, mask)
    keep = m & (x > 0)
    total = norm(x, m)
    scaled, _ = _scaled(x, m, lambda_max(x, m))  # overflow-free when the sum is not
    p = jnp.where(
        jnp.isposinf(total),
        jnp.where(keep, scaled, 0.0) / jnp.sum(scaled),
        jnp.where(keep, x, 0.0) / total,
    )
    plogp = jnp.where(keep, p * jnp.log(jnp.where(keep, p, 1.0)), 0.0)
    rank = matrix_rank(x, n_rows, m).astype(x.dtype)
    return jnp.where(rank > 1, -jnp.sum(plogp) / jnp.log(jnp.maximum(rank, 2.0)), jnp.nan)


def spectral_metrics(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    alpha: Float[ArrayLike, ""] = jnp.nan,
    n_rows: int | ArrayLike,
    n_cols: int | ArrayLike | None = None,
) -> SpectralMetrics:
    r"""Every docs/math.md §4 metric of one spectrum at once.

    Parameters
    ----------
    evals, mask : the spectrum (raw units) and its validity mask.
    alpha : the fitted exponent for ``alpha_weighted`` and ``log_alpha_norm`` (NaN gives NaN).
    n_rows : :math:`N`, the larger side of the (slice) matrix, for ``matrix_rank``.
    n_cols : :math:`M` for ``rank_loss = M - matrix_rank``; default: the number of valid
        eigenvalues.

    Examples
    --------
    >>> m = rmtkit.spectral_metrics(jnp.array([1.0, 4.0]), alpha=2.0, n_rows=2)
    >>> float(m.stable_rank), float(m.log_alpha_norm)
    (1.25, 1.2304489213782739)
    """
    x, m = masked(evals, mask)
    count = jnp.sum(m)
    rank = matrix_rank(x, n_rows, m)
    cols = count if n_cols is None else jnp.asarray(n_cols)
    return SpectralMetrics(
        lambda_max=lambda_max(x, m),
        norm=norm(x, m),
        log_norm=log_norm(x, m),
        log_spectral_norm=log_spectral_norm(x, m),
        stable_rank=stable_rank(x, m),
        alpha_weighted=alpha_weighted(x, alpha, m),
        log_alpha_norm=log_alpha_norm(x, alpha, m),
        entropy=entropy(x, n_rows, m),
        matrix_rank=rank,
        rank_loss=cols - rank,
        weak_rank_loss=weak_rank_loss(x, m),
        num_evals=count,
    )


#: alpha range of a well-trained layer (HT-SR); outside it, a warning label
ALPHA_OVER_TRAINED = 2.0
ALPHA_UNDER_TRAINED = 6.0


def alpha_warning(alpha: float) -> RowWarning:
    """docs/math.md §4 label of a layer (a :class:`rmtkit.errors.RowWarning`, equal to its
    string): "over-trained" (alpha < 2), "under-trained" (alpha > 6), "fit-failed" (NaN), else
    "". Host-side (strings are not JAX values)."""
    alpha = float(alpha)
    if np.isnan(alpha):
        return RowWarning.FIT_FAILED
    if alpha < ALPHA_OVER_TRAINED:
        return RowWarning.OVER_TRAINED
    if alpha > ALPHA_UNDER_TRAINED:
        return RowWarning.UNDER_TRAINED
    return RowWarning.NONE
