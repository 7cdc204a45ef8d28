r"""Closed-form random-matrix truths used by the strategies (plain numpy, no hypothesis).

Notation as in rmtkit (docs/math.md §1): :math:`W` is :math:`N \times M` with :math:`N \ge M`,
:math:`q = N / M \ge 1`, i.i.d. noise entries of variance :math:`\sigma^2`.

Units. Every function takes ``n_rows``: given, results are **raw** eigenvalues of
:math:`W^\top W` (what ``rmtkit.esd(w)`` returns by default and what ``rmtkit.mp_fit`` reports
in ``bulk_max``); left out (None), they are in the RMT units of :math:`W^\top W / N`
(``rmtkit.esd(w, normalize=True)``, ``rmtkit.mp_pdf``). The two differ by the factor
:math:`N`.
"""

import numpy as np

#: mean and standard deviation of the Tracy–Widom law TW₁ (GOE), Tracy & Widom (1996)
TW1_MEAN = -1.2065335745820
TW1_SD = 1.2680340580


def _units(value, n_rows):
    """``value`` in :math:`W^\\top W/N` units, times :math:`N` when ``n_rows`` is given."""
    return value if n_rows is None else value * n_rows


def mp_edges(q: float, sigma: float = 1.0, *, n_rows: int | None = None) -> tuple[float, float]:
    r"""Marchenko–Pastur bulk edges :math:`(\lambda_-, \lambda_+)`.

    .. math:: \lambda_\pm = \sigma^2 (1 \pm q^{-1/2})^2

    for the ESD of :math:`W^\top W / N`; times :math:`N` in raw units (``n_rows`` given).

    Examples
    --------
    >>> mp_edges(4.0)
    (0.25, 2.25)
    >>> mp_edges(4.0, 2.0, n_rows=800)
    (800.0, 7200.0)
    """
    r = 1.0 / np.sqrt(q)
    s2 = sigma**2
    return _units(s2 * (1.0 - r) ** 2, n_rows), _units(s2 * (1.0 + r) ** 2, n_rows)


def tracy_widom_edge(n_rows: int, n_cols: int, sigma: float = 1.0) -> tuple[float, float]:
    r"""Centre and scale of the largest eigenvalue of a Gaussian :math:`W^\top W`, raw units.

    Johnstone (2001): for i.i.d. :math:`N(0, \sigma^2)` entries,

    .. math:: \frac{\lambda_{\max} - \sigma^2\mu}{\sigma^2 s} \to \mathrm{TW}_1, \quad
              \mu = (\sqrt{N-1} + \sqrt M)^2, \quad
              s = (\sqrt{N-1} + \sqrt M)\Big(\tfrac{1}{\sqrt{N-1}} + \tfrac{1}{\sqrt M}\Big)^{1/3},

    accurate already for :math:`M \ge 10`. :math:`\mu \approx N\lambda_+`;
    :math:`s / \mu \approx 1.8\,\%` at :math:`N = M = 200`. TW₁ has mean :data:`TW1_MEAN`
    (−1.21), sd :data:`TW1_SD` (1.27) and 95 % quantile 0.98.

    Returns
    -------
    (center, scale) : floats
        :math:`\sigma^2\mu` and :math:`\sigma^2 s`.
    """
    root = np.sqrt(n_rows - 1.0) + np.sqrt(n_cols)
    s = root * (1.0 / np.sqrt(n_rows - 1.0) + 1.0 / np.sqrt(n_cols)) ** (1.0 / 3.0)
    return float(sigma**2 * root**2), float(sigma**2 * s)


def bbp_threshold(q: float) -> float:
    r"""Smallest spike strength that separates from the MP bulk: :math:`\theta_c = q^{-1/4}`.

    Strength :math:`\theta` is measured in units of the noise, as in
    :math:`W / (\sigma\sqrt N) = Z + \theta\, u v^\top` with :math:`Z_{ij} \sim N(0, 1/N)` and
    unit vectors :math:`u, v` (Benaych-Georges & Nadakuditi 2012, the rectangular
    Baik–Ben Arous–Péché transition).

    Examples
    --------
    >>> bbp_threshold(16.0)
    0.5
    """
    return float(q) ** -0.25


def bbp_outlier(theta, q: float, sigma: float = 1.0, *, n_rows: int | None = None):
    r"""Limit of the eigenvalue a rank-one spike of strength :math:`\theta` produces.

    Benaych-Georges & Nadakuditi (2012, Sec. 3.1), for :math:`c = 1/q`:

    .. math:: \lambda(\theta) = \sigma^2\,\frac{(1 + \theta^2)(c + \theta^2)}{\theta^2}
              \quad (\theta > q^{-1/4}), \qquad
              \lambda(\theta) = \lambda_+ = \sigma^2 (1 + \sqrt c)^2 \quad \text{otherwise}

    (continuous at the threshold). Finite-rank spikes with orthonormal :math:`u_k`, :math:`v_k`
    act independently. Times :math:`N` in raw units (``n_rows`` given).

    Parameters
    ----------
    theta : float or array
        Strengths :math:`\theta \ge 0`.

    Returns
    -------
    numpy array of the shape of ``theta``

    Examples
    --------
    >>> float(bbp_outlier(2.0, 1.0))  # (1 + 4)^2 / 4
    6.25
    """
    theta = np.asarray(theta, dtype=np.float64)
    c = 1.0 / q
    t2 = np.where(theta > 0, theta**2, 1.0)
    above = theta > bbp_threshold(q)
    out = np.where(above, (1.0 + t2) * (c + t2) / t2, (1.0 + np.sqrt(c)) ** 2)
    return _units(sigma**2 * out, n_rows)
