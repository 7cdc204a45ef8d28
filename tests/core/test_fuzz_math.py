"""Fuzz: arbitrary float arrays into every public math function of ``rmtkit.__all__``.

Contract: a call either raises a documented :mod:`rmtkit.errors` type or returns
outputs that are finite or NaN, never infinite, except where a docstring says so:

- ``norm`` (and ``spectral_metrics(...).norm``): a sum of finite eigenvalues can exceed the
  float range;
- ``pad_spectra``, ``slices``, ``randomize`` pass the input values through, and
  ``svd_sharpen`` / ``svd_smooth`` return the slices they do not change as they are (an
  infinite entry stays infinite; a slice they change is NaN);
- ``mp_pdf``: the Marchenko-Pastur density itself diverges at :math:`\\lambda = 0` for
  :math:`Q = 1`.

Inputs mix wild floats (NaN, +-inf, subnormals, +-1e308), realistic positive spectra, ties,
extreme scales and sprinkled bad entries, with and without masks. Shapes and static options are
few and fixed (each new one compiles a kernel, ~1-7 s), values vary freely; hypothesis runs
derandomized with a fixed example count and no example database, so CI runs the same cases
every time. Wrong shapes, dtypes and empty inputs must raise the documented types before any
kernel is compiled.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fuzz_settings
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rmtkit
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError, RmtkitError

SPEC_LEN = 24  # one spectrum length: >= 20, the standard (not small-n) fit rule applies
MAT_SHAPE = (6, 4)
CONV_SHAPE = (3, 4, 2, 2)
KEY = jax.random.key(0)

FUZZ = fuzz_settings(40)

wild = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
special = st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 5e-324, 2.2e-308, 1e-5, 1e308, -1e308, np.inf, -np.inf, np.nan]
)


@st.composite
def float_arrays(draw, shape):
    """Arrays of ``shape`` (float64) in one of several flavours (module docstring)."""
    mode = draw(st.sampled_from(["wild", "positive", "tied", "scaled", "sprinkled"]))
    n = int(np.prod(shape))
    if mode == "wild":
        return draw(hnp.arrays(np.float64, shape, elements=st.one_of(wild, special)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = rng.pareto(draw(st.floats(0.2, 5.0)), n) + draw(st.floats(0.0, 2.0))
    if mode == "tied":
        base = rng.choice(base[: draw(st.integers(1, 3))], n)
    elif mode == "scaled":
        base = base * 10.0 ** draw(st.integers(-330, 300))
    elif mode == "sprinkled":
        idx = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3))
        base[idx] = draw(st.lists(special, min_size=len(idx), max_size=len(idx)))
    if shape != (n,):
        base = base * rng.choice([-1.0, 1.0], n)  # weights have both signs
    return base.reshape(shape)


masks = st.one_of(st.none(), hnp.arrays(np.bool_, (SPEC_LEN,)))
scalars = st.one_of(wild, special, st.floats(0.5, 8.0))


def _leaves(out) -> dict:
    """Named array leaves of a function's output (NamedTuple fields, tuples, arrays)."""
    if hasattr(out, "_asdict"):
        return {k: v for k, v in out._asdict().items()}
    if isinstance(out, tuple):
        return {str(i): v for i, v in enumerate(out)}
    return {"out": out}


def assert_clean(out, *, allow_inf=()) -> None:
    """Every float leaf is finite or NaN (except the fields named in ``allow_inf``)."""
    for name, leaf in _leaves(out).items():
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating) and name not in allow_inf:
            assert not np.isinf(arr).any(), f"{name} is infinite: {arr}"


def call(fn, *args, **kwargs):
    """``fn(...)`` with its outputs on the host; documented errors pass through."""
    with jax.enable_x64(True):
        return jax.device_get(fn(*args, **kwargs))


def _other(x):
    """A second input of the same shape (reversed, scaled) for two-argument functions; bad
    inputs are passed on as they are."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim >= 1:
        return x[::-1] * 1.5
    return x


# --------------------------------------------------------------------------- spectra

_pl_candidates_jit = jax.jit(rmtkit.pl_candidates)


def _pl_candidates(e, m):
    """pl_candidates is eager (it retraces its scan per call); jitted for good inputs."""
    if isinstance(e, np.ndarray) and e.shape == (SPEC_LEN,) and e.dtype == np.float64:
        return _pl_candidates_jit(e, m)
    return rmtkit.pl_candidates(e, m)


SPECTRUM_FUNCTIONS = {
    "lambda_max": lambda e, m, s: rmtkit.lambda_max(e, m),
    "norm": lambda e, m, s: rmtkit.norm(e, m),
    "log_norm": lambda e, m, s: rmtkit.log_norm(e, m),
    "log_spectral_norm": lambda e, m, s: rmtkit.log_spectral_norm(e, m),
    "stable_rank": lambda e, m, s: rmtkit.stable_rank(e, m),
    "alpha_weighted": lambda e, m, s: rmtkit.alpha_weighted(e, s, m),
    "log_alpha_norm": lambda e, m, s: rmtkit.log_alpha_norm(e, s, m),
    "matrix_rank": lambda e, m, s: rmtkit.matrix_rank(e, s, m),
    "weak_rank_loss": lambda e, m, s: rmtkit.weak_rank_loss(e, m),
    "entropy": lambda e, m, s: rmtkit.entropy(e, s, m),
    "spectral_metrics": lambda e, m, s: rmtkit.spectral_metrics(e, m, alpha=s, n_rows=30),
    "fit_pl": lambda e, m, s: rmtkit.fit_pl(e, m),
    "fit_pl_xmin": lambda e, m, s: rmtkit.fit_pl(e, m, xmin=s),
    "pl_candidates": lambda e, m, s: _pl_candidates(e, m),
    "fit_tpl": lambda e, m, s: rmtkit.fit_tpl(e, m),
    "mp_fit": lambda e, m, s: rmtkit.mp_fit(e, m, Q=1.5),
    "detx": lambda e, m, s: rmtkit.detx(e, m),
    "rand_distance": lambda e, m, s: rmtkit.rand_distance(e, _other(e), m),
}
ALLOW_INF = {"norm": ("out",), "spectral_metrics": ("norm",)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPECTRUM_FUNCTIONS))
@FUZZ
@given(evals=float_arrays((SPEC_LEN,)), mask=masks, scalar=scalars)
def test_spectrum_functions(name, evals, mask, scalar):
    try:
        out = call(SPECTRUM_FUNCTIONS[name], evals, mask, scalar)
    except (InvalidWeightsError, InvalidArgumentError):
        return
    assert_clean(out, allow_inf=ALLOW_INF.get(name, ()))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mp_pdf", "mp_cdf", "mp_quantile"])
@FUZZ
@given(x=float_arrays((5,)), q=scalars, sigma=scalars)
def test_mp_law(name, x, q, sigma):
    fn = getattr(rmtkit, name)
    try:
        out = call(fn, x, Q=q, sigma=sigma)
    except InvalidArgumentError:
        return
    if name == "mp_pdf":  # diverges at 0 for Q = 1 (documented); nowhere else
        out = np.where((np.asarray(x) == 0) | ~np.isfinite(out), 0.0, out)
    assert_clean(out)


# --------------------------------------------------------------------------- weights

WEIGHT_FUNCTIONS = {
    "esd": lambda w, k: rmtkit.esd(w),
    "esd_unpooled": lambda w, k: rmtkit.esd(w, pool=False),
    "slices": lambda w, k: rmtkit.slices(w),
    "randomize": lambda w, k: rmtkit.randomize(w, KEY),
    "correlation_traps": lambda w, k: rmtkit.correlation_traps(w, KEY),
    "svd_sharpen": lambda w, k: rmtkit.svd_sharpen(w, k),
    "svd_smooth": lambda w, k: rmtkit.svd_smooth(w, k),
    "distances": lambda w, k: rmtkit.distances(w, _other(w), method="cka"),
}
#: these return (slices of) ``W`` itself where they change nothing, infinite entries included
PASS_THROUGH = {"slices", "randomize", "svd_sharpen", "svd_smooth"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WEIGHT_FUNCTIONS))
@FUZZ
@given(w=float_arrays(MAT_SHAPE), k=st.integers(-6, 6))
def test_weight_functions(name, w, k):
    try:
        out = call(WEIGHT_FUNCTIONS[name], w, k)
    except (InvalidWeightsError, InvalidArgumentError):
        return
    if name in PASS_THROUGH and not np.isfinite(w).all():
        return  # values pass through: an infinite entry stays one (documented)
    assert_clean(out)


@pytest.mark.slow
@FUZZ
@given(w=float_arrays(CONV_SHAPE))
def test_conv_spectra(w):
    assert_clean(call(rmtkit.esd, w))
    assert_clean(call(rmtkit.esd, w, pool=False))


# --------------------------------------------------------------------------- host helpers


@pytest.mark.slow
@settings(FUZZ, max_examples=200)
@given(
    spectra=st.lists(st.one_of(float_arrays((3,)), float_arrays((SPEC_LEN,))), max_size=4),
    length=st.one_of(st.none(), st.integers(-2, 300)),
)
def test_pad_spectra(spectra, length):
    try:
        out, mask = rmtkit.pad_spectra(spectra, length=length)
    except InvalidArgumentError:
        return
    assert out.shape == mask.shape and mask.sum() == sum(s.size for s in spectra)
    assert np.isfinite(out[~mask]).all()  # padding is clean; values pass through


@pytest.mark.slow
@settings(FUZZ, max_examples=200)
@given(n=st.integers(-5, 10**30), min_length=st.integers(-3, 512))
def test_bucket_length(n, min_length):
    try:
        length = rmtkit.bucket_length(n, min_length=min_length)
    except InvalidArgumentError:
        return
    assert length >= n and length >= min_length


@pytest.mark.slow
@pytest.mark.bad_input
@settings(FUZZ, max_examples=200)
@given(n=wild, min_length=st.integers(-3, 512))
def test_bucket_length_refuses_a_float(n, min_length):
    """A float length (even a whole one) is refused: ``n`` is an int (its annotation)."""
    with pytest.raises(InvalidArgumentError):
        rmtkit.bucket_length(n, min_length=min_length)


@pytest.mark.slow
@settings(FUZZ, max_examples=200)
@given(alpha=st.one_of(wild, special))
def test_alpha_warning(alpha):
    assert rmtkit.alpha_warning(alpha) in ("", "over-trained", "under-trained", "fit-failed")


# --------------------------------------------------------------------------- bad shapes / types

BAD_SPECTRA = [
    np.zeros(0),
    np.ones((3, 3)),
    np.float64(2.0),
    np.ones(4, complex),
    np.array(["a", "b"]),
    [[1.0, 2.0], [3.0]],
    object(),
]
BAD_WEIGHTS = [
    np.zeros((0, 3)),
    np.ones(3),
    np.ones((2, 2, 2, 2, 2)),
    np.float64(1.0),
    np.ones((3, 2), complex),
    np.array([["a"]]),
    [[1.0], [2.0, 3.0]],
]


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", range(len(BAD_SPECTRA)))
@pytest.mark.parametrize("name", sorted(SPECTRUM_FUNCTIONS))
def test_bad_spectra_raise_documented_errors(name, bad):
    with pytest.raises(RmtkitError):
        call(SPECTRUM_FUNCTIONS[name], BAD_SPECTRA[bad], None, 2.0)


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", range(len(BAD_WEIGHTS)))
@pytest.mark.parametrize("name", sorted(WEIGHT_FUNCTIONS))
def test_bad_weights_raise_documented_errors(name, bad):
    with pytest.raises(RmtkitError):
        call(WEIGHT_FUNCTIONS[name], BAD_WEIGHTS[bad], 1)


@pytest.mark.bad_input
def test_bad_masks_and_host_inputs():
    with pytest.raises(InvalidWeightsError, match="mask"):
        rmtkit.fit_pl(np.ones(SPEC_LEN), np.ones(3, bool))
    with pytest.raises(InvalidWeightsError, match="boolean"):
        rmtkit.lambda_max(np.ones(SPEC_LEN), np.ones(SPEC_LEN))
    with pytest.raises(InvalidWeightsError, match=r"spectra\[1\]"):
        rmtkit.pad_spectra([np.ones(3), np.array(["x"])])
    with pytest.raises(InvalidArgumentError, match="min_length"):
        rmtkit.bucket_length(10, min_length=0)  # used to loop forever
    with pytest.raises(InvalidArgumentError, match="`n`"):
        rmtkit.bucket_length(2.5)


# --------------------------------------------------------------------------- regressions


@pytest.mark.slow
def test_regression_metrics_of_broken_or_empty_spectra():
    """Found by this fuzz: inf / -inf leaked out of the metrics, empty spectra crashed."""
    with jax.enable_x64(True):
        assert np.isnan(rmtkit.lambda_max(np.array([1.0, np.inf])))
        assert np.isnan(rmtkit.norm(np.array([1.0, -np.inf])))
        assert np.isnan(rmtkit.log_norm(np.zeros(4)))  # was -inf
        assert np.isnan(rmtkit.lambda_max(np.ones(3), np.zeros(3, bool)))  # was -inf
        big = np.full(30, 1e308)
        assert np.isposinf(rmtkit.norm(big))  # documented: the sum overflows
        np.testing.assert_allclose(rmtkit.log_norm(big), 308 + np.log10(30), rtol=1e-12)
        np.testing.assert_allclose(rmtkit.stable_rank(big), 30.0, rtol=1e-12)
        np.testing.assert_allclose(rmtkit.entropy(big, 30), 1.0, rtol=1e-12)
        assert np.isfinite(rmtkit.log_alpha_norm(np.array([1e-200, 1.0, 2.0]), -3.0))
        assert np.isnan(rmtkit.alpha_weighted(np.array([1.0, 2.0]), np.inf))
        cands = rmtkit.pl_candidates(np.arange(1.0, 25.0))
        assert not np.isinf(np.asarray(cands.alpha)).any()
    with pytest.raises(InvalidWeightsError, match="empty"):
        rmtkit.fit_pl(np.zeros(0))


def test_regression_svd_of_infinite_entries_returns():
    """LAPACK's SVD with vectors never returned on this matrix (found by this fuzz): the
    sharpened / smoothed slice is NaN now, at once."""
    inf = np.inf
    w = np.array(
        [
            [inf, inf, 1e-6, 1e-6],
            [1e-5, 1e-5, 1e-6, 1e-6],
            [1e-6, 1e-6, 1e-5, 1e-5],
            [1e-5, 1e-6, 1e-6, 1e-6],
            [1e-6, 1e-6, 1e-6, -2.5e16],
            [1e-6, 1e-6, 1e-6, -6.4e189],
        ]
    )
    assert np.isnan(call(rmtkit.svd_sharpen, w, 1)).all()
    assert np.isnan(call(rmtkit.svd_smooth, w, 2)).all()


def test_regression_normal_values_unchanged():
    """The edge-case guards leave ordinary spectra bit for bit as the plain formulas."""
    x = np.random.default_rng(0).pareto(2.0, SPEC_LEN) + 0.1
    with jax.enable_x64(True):
        assert float(rmtkit.log_norm(x)) == float(jnp.log10(jnp.sum(x)))
        assert float(rmtkit.stable_rank(x)) == float(jnp.sum(x) / jnp.max(x))
