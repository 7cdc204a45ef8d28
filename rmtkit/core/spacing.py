r"""Level-spacing statistics of a spectrum (docs/math.md §11.2): how its eigenvalues repel.

For ascending eigenvalues :math:`x_1 < \dots < x_n` the spacings are
:math:`s_i = x_{i+1} - x_i`. Eigenvalues of a random matrix repel (GOE: the Wigner surmise
:math:`P(s) = \frac{\pi s}{2} e^{-\pi s^2/4}`), independent points do not (Poisson:
:math:`P(s) = e^{-s}`). The comparison needs *unfolded* spacings, measured in units of the
local mean spacing; the ratio of consecutive spacings needs no unfolding (Oganesyan & Huse
2007; Atas, Bogomolny, Giraud & Roux 2013):

.. math:: \tilde r_i = \frac{\min(s_i, s_{i+1})}{\max(s_i, s_{i+1})} \in [0, 1], \qquad
          \langle \tilde r \rangle = 2\ln 2 - 1 \approx 0.386 \text{ (Poisson)}, \;
          0.5307 \text{ (GOE)}, \; 0.5996 \text{ (GUE)}.

WeightWatcher 0.7.7 only plots :math:`\log_{10} s_i` (``deltas=True``); rmtkit reports
:math:`\langle\tilde r\rangle` and the Kolmogorov-Smirnov distances of the unfolded spacings to
the Wigner surmise and to Poisson, per layer.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Bool, Float, Int

from rmtkit.core import validate
from rmtkit.core.esd import masked

__all__ = [
    "GOE_MEAN_RATIO",
    "GUE_MEAN_RATIO",
    "LevelSpacing",
    "POISSON_MEAN_RATIO",
    "level_spacing",
    "spacing_ratios",
    "unfolded_spacings",
    "wigner_cdf",
]

#: :math:`\langle\tilde r\rangle` of independent (Poisson) levels: :math:`2\ln 2 - 1`
POISSON_MEAN_RATIO = 2.0 * math.log(2.0) - 1.0
#: :math:`\langle\tilde r\rangle` of large GOE matrices (Atas et al. 2013, numerically exact)
GOE_MEAN_RATIO = 0.5307
#: :math:`\langle\tilde r\rangle` of large GUE matrices (Atas et al. 2013)
GUE_MEAN_RATIO = 0.5996
#: default degree of the polynomial that unfolds the spectrum (fit of its staircase)
UNFOLD_DEGREE = 7


class LevelSpacing(NamedTuple):
    """Result of :func:`level_spacing` (0-d arrays).

    mean_ratio : :math:`\\langle\\tilde r\\rangle` (NaN with fewer than 3 levels).
    ks_wigner : KS distance of the unfolded spacings to the Wigner surmise (GOE).
    ks_poisson : KS distance of the unfolded spacings to the exponential law (Poisson).
    num_spacings : number of spacings used (levels - 1).
    """

    mean_ratio: Float[Array, ""]
    ks_wigner: Float[Array, ""]
    ks_poisson: Float[Array, ""]
    num_spacings: Int[Array, ""]


def wigner_cdf(s: ArrayLike) -> Array:
    r"""CDF of the Wigner surmise (GOE, mean spacing 1): :math:`1 - e^{-\pi s^2/4}`."""
    s = jnp.asarray(s)
    return 1.0 - jnp.exp(-jnp.pi * s * s / 4.0)


def _sorted_levels(x: Array, valid: Array) -> tuple[Array, Array]:
    """Valid finite levels first, ascending (padding holds the largest level); their count."""
    keep = valid & jnp.isfinite(x)
    n = jnp.sum(keep)
    srt = jnp.sort(jnp.where(keep, x, jnp.inf))
    top = jnp.max(jnp.where(keep, x, -jnp.inf))
    return jnp.where(jnp.arange(x.shape[0]) < n, srt, top), n


def spacing_ratios(
    evals: Float[ArrayLike, " n"], mask: Bool[ArrayLike, " n"] | None = None
) -> tuple[Float[Array, " n"], Bool[Array, " n"]]:
    r"""Ratios :math:`\tilde r_i = \min(s_i, s_{i+1})/\max(s_i, s_{i+1})` of consecutive
    spacings of the sorted valid levels (module docstring), and their validity.

    Entry ``i`` is the ratio of spacings ``i`` and ``i+1``; ``valid`` is False for the last two
    positions, padding, and two equal spacings of 0 (degenerate levels).
    """
    x, valid = masked(evals, mask)
    return _ratios(*_sorted_levels(x, valid))


def _ratios(levels: Array, n: Array) -> tuple[Array, Array]:
    s = jnp.diff(levels, append=levels[-1:])  # s_i = x_{i+1} - x_i, 0 on padding
    nxt = jnp.roll(s, -1)
    hi = jnp.maximum(s, nxt)
    i = jnp.arange(levels.shape[0])
    ok = (i < n - 2) & (hi > 0)
    return jnp.where(ok, jnp.minimum(s, nxt) / jnp.where(ok, hi, 1.0), jnp.nan), ok


def unfolded_spacings(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    degree: int = UNFOLD_DEGREE,
) -> tuple[Float[Array, " n"], Bool[Array, " n"]]:
    r"""Spacings in units of the local mean spacing (unfolding), and their validity.

    The staircase :math:`\mathcal N(x_i) = i` of the sorted levels is fitted by least squares
    with a polynomial :math:`\bar{\mathcal N}` of ``degree`` in the levels (rescaled to
    :math:`[-1, 1]`); the unfolded spacings :math:`\bar{\mathcal N}(x_{i+1}) -
    \bar{\mathcal N}(x_i)` are divided by their mean, so they average 1.
    """
    x, valid = masked(evals, mask)
    validate.positive(degree, "degree", integer=True)
    return _unfold(*_sorted_levels(x, valid), degree)


def _unfold(levels: Array, n: Array, degree: int) -> tuple[Array, Array]:
    i = jnp.arange(levels.shape[0])
    inside = i < n
    lo, hi = levels[0], levels[jnp.maximum(n - 1, 0)]
    span = jnp.where(hi > lo, hi - lo, 1.0)
    t = jnp.where(inside, 2.0 * (levels - lo) / span - 1.0, 0.0)
    basis = jnp.stack([t**k for k in range(degree + 1)], axis=1)
    weight = inside.astype(levels.dtype)[:, None]
    coef, *_ = jnp.linalg.lstsq(basis * weight, i.astype(levels.dtype) * weight[:, 0])
    smooth = basis @ coef
    s = jnp.diff(smooth, append=smooth[-1:])
    ok = i < n - 1
    mean = jnp.sum(jnp.where(ok, s, 0.0)) / jnp.maximum(n - 1, 1)
    good = ok & (mean > 0)
    return jnp.where(good, s / jnp.where(mean > 0, mean, 1.0), jnp.nan), good


def _ks(values: Array, valid: Array, cdf) -> Array:
    """Kolmogorov-Smirnov distance of the valid ``values`` to the law of ``cdf``."""
    n = jnp.sum(valid)
    srt = jnp.sort(jnp.where(valid, values, jnp.inf))
    i = jnp.arange(values.shape[0])
    inside = i < n
    model = cdf(jnp.where(inside, jnp.maximum(srt, 0.0), 0.0))
    nf = jnp.maximum(n, 1).astype(values.dtype)
    gap = jnp.maximum(jnp.abs((i + 1) / nf - model), jnp.abs(i / nf - model))
    return jnp.where(n > 0, jnp.max(jnp.where(inside, gap, 0.0)), jnp.nan)


def level_spacing(
    evals: Float[ArrayLike, " n"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    degree: int = UNFOLD_DEGREE,
) -> LevelSpacing:
    r"""Level-spacing statistics of one spectrum (docs/math.md §11.2).

    :math:`\langle\tilde r\rangle` over all consecutive spacing ratios (no unfolding), and the
    KS distances of the unfolded spacings (:func:`unfolded_spacings`) to the Wigner surmise
    (:func:`wigner_cdf`) and to the exponential law. Levels are the valid entries of
    ``evals`` (any sign: a GOE sample works as is); for a layer, :func:`rmtkit.analyze`
    passes its bulk, the eigenvalues below the power-law ``xmin``.

    Parameters
    ----------
    evals : array, shape (n,)
        Levels, any order.
    mask : bool array, shape (n,), optional
        ``False`` marks padding.
    degree : int, default 7
        Degree of the unfolding polynomial.

    Returns
    -------
    LevelSpacing
        NaN fields with fewer than 3 levels (``num_spacings`` counts the spacings).

    References
    ----------
    .. [1] Atas, Bogomolny, Giraud, Roux, "Distribution of the ratio of consecutive level
       spacings in random matrix ensembles", PRL 110, 084101 (2013).
    .. [2] Oganesyan, Huse, "Localization of interacting fermions at high temperature",
       PRB 75, 155111 (2007).

    Examples
    --------
    >>> r = rmtkit.level_spacing(jnp.array([0.0, 1.0, 3.0, 4.0]))  # spacings 1, 2, 1
    >>> float(r.mean_ratio)
    0.5
    """
    x, valid = masked(evals, mask)
    validate.positive(degree, "degree", integer=True)
    return _level_spacing(x, valid, degree)


@functools.partial(jax.jit, static_argnames=("degree",))
def _level_spacing(x, valid, degree) -> LevelSpacing:
    levels, n = _sorted_levels(x, valid)
    ratio, ok = _ratios(levels, n)
    count = jnp.sum(ok)
    mean_ratio = jnp.where(count > 0, jnp.sum(jnp.where(ok, ratio, 0.0)) / count, jnp.nan)
    s, good = _unfold(levels, n, degree)
    enough = n >= 3
    nan = jnp.asarray(jnp.nan, x.dtype)
    return LevelSpacing(
        mean_ratio=jnp.where(enough, mean_ratio, nan),
        ks_wigner=jnp.where(enough, _ks(s, good, wigner_cdf), nan),
        ks_poisson=jnp.where(enough, _ks(s, good, lambda v: 1.0 - jnp.exp(-v)), nan),
        num_spacings=jnp.maximum(n - 1, 0).astype(jnp.int32),
    )
