r"""Hypothesis strategies that draw data together with the truth it was drawn from.

Every strategy returns a NamedTuple: the data (a numpy array) and the quantities it guarantees,
each documented with its formula and with how tight it is at the sizes drawn by default.

Conventions (docs/math.md §1): a matrix ``w`` is ``(n_rows, n_cols)`` = :math:`N \times M` with
:math:`N \ge M` and :math:`q = N / M`. Eigenvalue truths (``bulk_max``, ``outliers``, ``evals``)
are in **raw units**, the eigenvalues of :math:`W^\top W` that ``rmtkit.esd(w)`` returns and
``rmtkit.mp_fit`` reports; divide by :math:`N` for the RMT units of :math:`W^\top W/N`
(``rmtkit.esd(w, normalize=True)``).

Shapes and seeds. JAX compiles once per shape, so sizes come from a few values (by default
:math:`M = 200`, :math:`q \in \{1, 2, 4\}`); every knob takes a tuple (sampled from) or any
hypothesis strategy. Randomness is a numpy ``Generator`` seeded from a drawn integer, so an
example shrinks and replays like any other hypothesis value.

The "how tight" numbers below were measured with rmtkit 0.1 on the default sizes (hundreds to
thousands of draws); they are what the tests of this module rely on.
"""

from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st

from rmtkit.testing import matrices, samples, theory


class ParetoSample(NamedTuple):
    r"""Pareto sample: ``x`` i.i.d. with density :math:`(\alpha-1) x_{\min}^{\alpha-1}
    x^{-\alpha}` on :math:`x \ge x_{\min}`."""

    x: np.ndarray
    alpha: float
    xmin: float


class GaussianMatrix(NamedTuple):
    r"""``w`` with i.i.d. :math:`N(0, \sigma^2)` entries; its ESD follows Marchenko–Pastur.

    ``bulk_min``, ``bulk_max``: :math:`N\sigma^2(1 \mp q^{-1/2})^2`, raw units.
    ``tw_center``, ``tw_scale``: Johnstone's centre and scale of :math:`\lambda_{\max}`
    (:func:`rmtkit.testing.theory.tracy_widom_edge`), raw units.
    """

    w: np.ndarray
    sigma: float
    q: float
    bulk_min: float
    bulk_max: float
    tw_center: float
    tw_scale: float


class SpikedMatrix(NamedTuple):
    r"""Gaussian noise plus a planted rank-k signal (:func:`spiked_matrices`).

    ``thetas`` (k,): strengths :math:`\theta_k`; ``threshold``: :math:`\theta_c = q^{-1/4}`;
    ``outliers`` (k,): predicted eigenvalue of each spike (raw units; ``bulk_max`` for the
    spikes below the threshold); ``num_outliers``: :math:`\#\{\theta_k > \theta_c\}`;
    ``bulk_max``, ``tw_center``, ``tw_scale``: those of the noise alone (:class:`GaussianMatrix`),
    which bound the bulk of ``w`` (its eigenvalue ``num_outliers + 1`` from the top is at most
    the noise's largest, by interlacing).
    """

    w: np.ndarray
    sigma: float
    q: float
    thetas: np.ndarray
    threshold: float
    outliers: np.ndarray
    num_outliers: int
    bulk_max: float
    tw_center: float
    tw_scale: float


class HeavyTailedMatrix(NamedTuple):
    r"""``w`` with i.i.d. symmetric Pareto entries of tail index :math:`\mu`; ``alpha`` is the
    asymptotic power-law exponent :math:`1 + \mu/2` of its ESD tail."""

    w: np.ndarray
    mu: float
    alpha: float
    q: float


class PrescribedMatrix(NamedTuple):
    r"""``w`` whose :math:`W^\top W` has exactly the eigenvalues ``evals`` (ascending, raw)."""

    w: np.ndarray
    evals: np.ndarray
    q: float


class TrappedMatrix(NamedTuple):
    r"""Gaussian matrix with a few planted large entries: correlation traps.

    ``num_traps``: entries planted; ``trap_index`` (k, 2): their positions in ``w``;
    ``thetas`` (k,): their strengths :math:`|a_k|/(\sigma\sqrt N)`; ``outliers`` (k,): the
    predicted eigenvalue each produces, in the original and in the randomized spectrum (raw);
    ``bulk_max``, ``tw_center``, ``tw_scale``: those of the noise (:class:`GaussianMatrix`).
    """

    w: np.ndarray
    sigma: float
    q: float
    num_traps: int
    trap_index: np.ndarray
    thetas: np.ndarray
    outliers: np.ndarray
    bulk_max: float
    tw_center: float
    tw_scale: float


def _strategy(value) -> st.SearchStrategy:
    """A strategy as is; a tuple or list → ``sampled_from``; anything else → ``just``."""
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, tuple | list):
        return st.sampled_from(tuple(value))
    return st.just(value)


def seeds() -> st.SearchStrategy[np.random.Generator]:
    """A numpy ``Generator`` seeded from a drawn integer (shrinks, replays)."""
    return st.integers(0, 2**32 - 1).map(np.random.default_rng)


def _shape(draw, n_cols, qs) -> tuple[int, int, float]:
    """``(N, M, q)`` with :math:`N = \\mathrm{round}(qM)` and the realised :math:`q = N/M`."""
    m = int(draw(_strategy(n_cols)))
    n = int(round(float(draw(_strategy(qs))) * m))
    if n < m:
        raise ValueError(f"q must be >= 1 (rmtkit orients N >= M); got N={n}, M={m}.")
    return n, m, n / m


_ALPHAS = st.floats(1.5, 6.0)
_XMINS = (1e-3, 1.0, 50.0)
_SIGMAS = (0.5, 1.0, 3.0)
_N_COLS = (200,)
_QS = (1.0, 2.0, 4.0)
_RANKS = (1, 2, 3)
#: spike strengths in units of the BBP threshold: clearly below or clearly above it
_SPIKE_RATIOS = st.one_of(st.floats(0.2, 0.6), st.floats(2.0, 4.0))
_TRAP_RATIOS = st.floats(3.0, 6.0)
_MUS = st.floats(0.5, 1.5)


@st.composite
def pareto_samples(
    draw,
    sizes=(32, 128, 512),
    alphas=_ALPHAS,
    xmins=_XMINS,
    dtype=np.float64,
) -> ParetoSample:
    r"""Pareto samples with known exponent :math:`\alpha` and lower bound :math:`x_{\min}`.

    Drawn by inversion (:func:`rmtkit.testing.samples.pareto_draws`):
    :math:`x = x_{\min} U^{-1/(\alpha-1)}`, :math:`U` uniform on (0, 1].

    Truth (exact at every n): :math:`x \ge x_{\min}` and
    :math:`(\alpha - 1)\sum_i \ln(x_i/x_{\min}) \sim \mathrm{Gamma}(n, 1)`, so the MLE at the
    true :math:`x_{\min}` has mean :math:`1 + (\alpha-1)n/(n-1)` and sd
    :math:`\approx(\alpha-1)/\sqrt n` (0.18·(α−1) at n = 32, 0.044·(α−1) at n = 512).
    """
    n = draw(_strategy(sizes))
    alpha = draw(_strategy(alphas))
    xmin = draw(_strategy(xmins))
    x = samples.pareto_draws(n, alpha, xmin, rng=draw(seeds()))
    return ParetoSample(x.astype(dtype), float(alpha), float(xmin))


@st.composite
def gaussian_matrices(
    draw, n_cols=_N_COLS, qs=_QS, sigmas=_SIGMAS, dtype=np.float64
) -> GaussianMatrix:
    r"""Gaussian (Marchenko–Pastur) matrices of chosen aspect ratio and entry sd.

    ``w`` is :math:`N \times M`, :math:`N = \mathrm{round}(qM)`, entries i.i.d.
    :math:`N(0, \sigma^2)`. Truths (raw units; divide by :math:`N` for :math:`W^\top W/N`):

    * MP bulk: ``bulk_min``, ``bulk_max`` :math:`= N\sigma^2(1 \mp q^{-1/2})^2`
      (:math:`\lambda_\pm = \sigma^2(1 \mp q^{-1/2})^2` for :math:`W^\top W/N`, docs/math.md §5).
    * Largest eigenvalue: :math:`(\lambda_{\max} - \mu)/s \approx \mathrm{TW}_1` with
      :math:`\mu` = ``tw_center``, :math:`s` = ``tw_scale`` (Johnstone 2001).

    How tight at M = 200 (4000 draws per q): :math:`\lambda_{\max}/`\ ``bulk_max`` − 1 has
    mean −2.4 % and sd 2.3 % at q = 1 (−1.5 %, 1.4 % at q = 4), as TW₁ predicts;
    ``rmtkit.mp_fit(rmtkit.esd(w), Q=q).bulk_max`` is within 0.8 % (sd) of ``bulk_max``,
    worst of 4000 draws 3.1 % (q = 1), and reports 0 spikes (``margin="ww"``) in all but about
    1 draw in 2000 at q = 1 (there the top noise eigenvalue sits far in the TW₁ upper tail,
    :math:`z \approx 3.6`), none in 4000 at q = 2, 4.

    Parameters
    ----------
    n_cols, qs, sigmas : tuple or strategy
        :math:`M`, :math:`q \ge 1` and :math:`\sigma` (default 200; 1, 2, 4; 0.5, 1, 3).
    dtype : numpy dtype, default float64
        The entries are drawn in float64 and cast.
    """
    n, m, q = _shape(draw, n_cols, qs)
    sigma = float(draw(_strategy(sigmas)))
    rng = draw(seeds())
    w = rng.normal(0.0, sigma, size=(n, m)).astype(dtype)
    lo, hi = theory.mp_edges(q, sigma, n_rows=n)
    center, scale = theory.tracy_widom_edge(n, m, sigma)
    return GaussianMatrix(w, sigma, q, float(lo), float(hi), center, scale)


@st.composite
def spiked_matrices(
    draw,
    n_cols=_N_COLS,
    qs=_QS,
    sigmas=_SIGMAS,
    ranks=_RANKS,
    ratios=_SPIKE_RATIOS,
    dtype=np.float64,
) -> SpikedMatrix:
    r"""Gaussian bulk plus a planted rank-k signal of known strengths (BBP transition).

    .. math:: W = \sigma Z + \sigma\sqrt N \sum_{k} \theta_k u_k v_k^\top,
              \qquad Z_{ij} \sim N(0, 1),

    :math:`u_k`, :math:`v_k` Haar orthonormal (:func:`rmtkit.testing.matrices.add_spikes`):
    :math:`\theta` is the strength in units of the noise. Each :math:`\theta_k` is
    ``ratio`` × :math:`\theta_c` with :math:`\theta_c = q^{-1/4}` (``threshold``), ``ratio``
    drawn from ``ratios``.

    Truths (Benaych-Georges & Nadakuditi 2012; raw units):

    * a spike separates from the bulk iff :math:`\theta_k > \theta_c`; ``num_outliers``
      counts those;
    * its eigenvalue tends to ``outliers[k]``
      :math:`= N\sigma^2 (1 + \theta_k^2)(q^{-1} + \theta_k^2)/\theta_k^2`; spikes below the
      threshold stick to the edge (``outliers[k] = bulk_max``).

    How tight at M = 200: the transition is sharp only asymptotically, so the default
    ``ratios`` keep out of [0.6, 2]·θ_c. There (40 draws per q ∈ {1, 2, 4, 8} and ratio) the
    outlier eigenvalue is within 1 % of the prediction on average, with sd 2–4.5 % (q = 8 … 1;
    larger near the threshold; worst of ~1700 draws 12.5 %), and ``rmtkit.mp_fit`` (``margin="ww"``)
    counts exactly ``num_outliers`` spikes in 599 of 600 draws with the default ``ratios`` (the
    exception: one more, a noise eigenvalue in the TW₁ upper tail, as for pure noise); at
    ratio 1.5 it misses the spike in ~1 draw in 40.

    Parameters
    ----------
    n_cols, qs, sigmas : tuple or strategy
        As in :func:`gaussian_matrices`.
    ranks : tuple or strategy
        Number k of planted spikes (default 1, 2, 3).
    ratios : tuple or strategy
        :math:`\theta_k/\theta_c`, drawn independently per spike (default: uniform on
        [0.2, 0.6] or on [2, 4]).
    dtype : numpy dtype, default float64
    """
    n, m, q = _shape(draw, n_cols, qs)
    sigma = float(draw(_strategy(sigmas)))
    rank = int(draw(_strategy(ranks)))
    ratio_strategy = _strategy(ratios)
    threshold = theory.bbp_threshold(q)
    thetas = np.array([float(draw(ratio_strategy)) for _ in range(rank)]) * threshold
    rng = draw(seeds())
    w = matrices.add_spikes(rng.normal(0.0, sigma, size=(n, m)), thetas, sigma=sigma, rng=rng)
    _, hi = theory.mp_edges(q, sigma, n_rows=n)
    outliers = theory.bbp_outlier(thetas, q, sigma, n_rows=n)
    num = int(np.sum(thetas > threshold))
    center, scale = theory.tracy_widom_edge(n, m, sigma)
    return SpikedMatrix(
        w.astype(dtype), sigma, q, thetas, threshold, outliers, num, float(hi), center, scale
    )


@st.composite
def heavy_tailed_matrices(
    draw, n_cols=_N_COLS, qs=(1.0, 2.0), mus=_MUS, dtype=np.float64
) -> HeavyTailedMatrix:
    r"""Matrices with i.i.d. symmetric Pareto entries, :math:`P(|W_{ij}| > t) = t^{-\mu}`.

    Truth (Martin & Mahoney, JMLR 22 (2021) 165, Table 3, "very heavy-tailed" class): for
    :math:`0 < \mu < 2` the ESD of :math:`W^\top W` has a power-law tail
    :math:`\rho(\lambda) \sim \lambda^{-\alpha}` with

    .. math:: \alpha = 1 + \mu / 2 .

    This is an **asymptotic** statement (:math:`N, M \to \infty`; the largest eigenvalues are
    the squares of the largest entries, whose tail index is :math:`\mu/2`). At finite size
    ``rmtkit.fit_pl(rmtkit.esd(w)).alpha`` is a noisy, biased estimate of it. Measured at
    M = 200, q = 1, 2, 20 draws each: mean − α = −0.03 … +0.00 (μ = 0.5, 1.0), +0.1 … +0.15
    (μ = 1.5), +0.5 (μ = 1.9, where the finite-size crossover to the Gaussian class starts);
    per-draw sd 0.03–0.06 (μ = 0.5), 0.06–0.1 (μ = 1), 0.13–0.16 (μ = 1.5), ~0.3 (μ = 1.9).
    Hence the default ``mus`` = [0.5, 1.5]; μ ≥ 2 is refused (no α = 1 + μ/2 truth there at
    any size we can afford: fits give 4–11 at μ = 2.5–3.5).

    Parameters
    ----------
    n_cols, qs : tuple or strategy
        As in :func:`gaussian_matrices` (default q = 1, 2).
    mus : tuple or strategy
        Tail index :math:`\mu \in (0, 2)` (default uniform on [0.5, 1.5]).
    dtype : numpy dtype, default float64
    """
    n, m, q = _shape(draw, n_cols, qs)
    mu = float(draw(_strategy(mus)))
    if not 0.0 < mu < 2.0:
        raise ValueError(f"heavy_tailed_matrices needs a tail index mu in (0, 2); got {mu}.")
    rng = draw(seeds())
    w = matrices.pareto_entries((n, m), mu, rng=rng)
    return HeavyTailedMatrix(w.astype(dtype), mu, 1.0 + mu / 2.0, q)


def log_uniform_spectrum(m: int, *, rng: np.random.Generator) -> np.ndarray:
    r"""Default law of :func:`matrices_with_spectrum`: :math:`\log_{10}\lambda` uniform on
    :math:`[c - d/2, c + d/2]`, centre :math:`c` uniform on [−2, 2], ``d`` = 2 or 4 decades."""
    decades = rng.choice(np.array([2.0, 4.0]))
    center = rng.uniform(-2.0, 2.0)
    return 10.0 ** (center + decades * (rng.random(m) - 0.5))


@st.composite
def matrices_with_spectrum(
    draw, n_cols=_N_COLS, qs=_QS, spectrum=log_uniform_spectrum, dtype=np.float64
) -> PrescribedMatrix:
    r"""Matrices with a prescribed spectrum: :math:`W = U\operatorname{diag}(s)V^\top`.

    :math:`U` (:math:`N \times M`) and :math:`V` (:math:`M \times M`) Haar orthonormal
    (QR of a Gaussian matrix with the sign fix, :func:`rmtkit.testing.matrices.with_spectrum`),
    :math:`s = \sqrt{\lambda}` with :math:`\lambda` = ``spectrum(M, rng=rng)``.

    Truth: the eigenvalues of :math:`W^\top W` are exactly ``evals`` (sorted ascending, raw
    units) up to round-off. In float64 that is :math:`\lesssim 10^{-15}\lambda_{\max}`
    absolute in the construction; ``rmtkit.esd(w, method="svd")`` then agrees to
    :math:`\sim 2\epsilon\sqrt{\lambda_{\max}/\lambda_i}` relative, the Gram route
    (``method="gram"``) to :math:`\sim\epsilon\lambda_{\max}/\lambda_i`: below
    :math:`10^{-10}` relative for the default spectra (at most 4 decades). With
    ``dtype=float32`` the cast alone costs :math:`\sim 10^{-7}` relative.

    Parameters
    ----------
    n_cols, qs : tuple or strategy
        As in :func:`gaussian_matrices`.
    spectrum : callable ``(m, *, rng) -> array of m non-negative values``
        The eigenvalue law (default :func:`log_uniform_spectrum`). Any law works, e.g. a
        Pareto sample for a spectrum with a known power-law tail.
    dtype : numpy dtype, default float64
    """
    n, m, q = _shape(draw, n_cols, qs)
    rng = draw(seeds())
    evals = np.sort(np.asarray(spectrum(m, rng=rng), dtype=np.float64))
    w = matrices.with_spectrum(evals, n, rng=rng)
    return PrescribedMatrix(w.astype(dtype), evals, q)


@st.composite
def trapped_matrices(
    draw,
    n_cols=_N_COLS,
    qs=_QS,
    sigmas=_SIGMAS,
    counts=_RANKS,
    ratios=_TRAP_RATIOS,
    dtype=np.float64,
) -> TrappedMatrix:
    r"""Gaussian matrices with planted correlation traps: a few very large entries.

    ``num_traps`` entries of :math:`W` (i.i.d. :math:`N(0, \sigma^2)`), in distinct rows and
    columns, are overwritten by :math:`\pm a_k`, :math:`a_k = \theta_k\sigma\sqrt N`,
    :math:`\theta_k` = ``ratio`` × :math:`q^{-1/4}` (:func:`rmtkit.testing.matrices.plant_traps`).
    Each is a rank-one perturbation :math:`a_k e_i e_j^\top` of a Gaussian matrix, i.e. a spike
    of strength :math:`\theta_k` (:func:`spiked_matrices`), and it stays one after any
    permutation of the entries: this is what ``rmtkit.correlation_traps`` detects (spikes of the
    MP fit of the randomized spectrum, docs/math.md §6).

    Truths (raw units):

    * ``outliers[k]`` :math:`= N\sigma^2(1+\theta_k^2)(q^{-1}+\theta_k^2)/\theta_k^2` is the
      limit of the eigenvalue of trap k, in the original **and** the randomized spectrum
      (``bulk_max`` is the noise's MP edge);
    * ``num_traps`` randomized eigenvalues separate from the bulk, and the entries that
      produce them are at ``trap_index`` — provided the randomization keeps the planted
      entries in distinct rows and columns (two entries in one row or column merge into one
      rank-one trap). A uniform permutation does so with probability at least
      :math:`1 - \binom{k}{2}(1/N + 1/M)` (≥ 97 % at N = M = 200, k = 3).

    How tight at M = 200 (default ratios 3–6 × threshold; 180 draws, q = 1, 2, 4): whenever the
    planted entries stayed in distinct rows and columns, ``rmtkit.correlation_traps(w, key)``
    counted ``num_traps`` traps and located every planted entry; the largest randomized
    eigenvalue was within 0.6 % (sd) of ``max(outliers)``, worst 1.6 %.

    Parameters
    ----------
    n_cols, qs, sigmas : tuple or strategy
        As in :func:`gaussian_matrices`.
    counts : tuple or strategy
        Number of traps (default 1, 2, 3).
    ratios : tuple or strategy
        :math:`\theta_k / q^{-1/4}` per trap (default uniform on [3, 6]).
    dtype : numpy dtype, default float64
    """
    n, m, q = _shape(draw, n_cols, qs)
    sigma = float(draw(_strategy(sigmas)))
    count = int(draw(_strategy(counts)))
    ratio_strategy = _strategy(ratios)
    thetas = np.array([float(draw(ratio_strategy)) for _ in range(count)])
    thetas = thetas * theory.bbp_threshold(q)
    rng = draw(seeds())
    noise = rng.normal(0.0, sigma, size=(n, m))
    w, index = matrices.plant_traps(noise, thetas * sigma * np.sqrt(n), rng=rng)
    _, hi = theory.mp_edges(q, sigma, n_rows=n)
    outliers = theory.bbp_outlier(thetas, q, sigma, n_rows=n)
    center, scale = theory.tracy_widom_edge(n, m, sigma)
    return TrappedMatrix(
        w.astype(dtype), sigma, q, count, index, thetas, outliers, float(hi), center, scale
    )
