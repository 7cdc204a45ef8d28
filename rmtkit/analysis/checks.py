r"""The rows of a layer and the per-layer checks that label them.

A bad layer never raises and never changes another layer's row (bit for bit); its row carries
NaN and a ``warning`` saying why. Checks, in this order (the first that applies labels the row):

- ``"no-base-layer"``, ``"base-shape-mismatch"``: ``base=`` has no partner of that name/shape.
- ``"too-many-evals"``: more than ``max_evals`` eigenvalues; ``W`` is not even read (sizes only).
- ``"read-failed: <reason>"``: reading ``W`` raised anything (a corrupt tensor, a vanished
  file, a loader's own error; sizes only).
- ``"non-finite-weights"``: NaN or Inf in ``W`` (sizes only).
- ``"all-zero"``: every entry 0 (sizes only).
- ``"spectrum-overflow"`` / ``"spectrum-underflow"``: entries so large (max|W| above
  :data:`SPECTRUM_MAX` / sqrt(size), 1e150 / sqrt(size)) or so small (all below
  :data:`SPECTRUM_MIN` = 1e-150) that the eigenvalues would leave float64 (sizes only; only
  float64 weights can be that extreme).
- ``"esd-failed: <reason>"``: LAPACK did not converge on the spectrum (sizes only).
- ``"too-few-evals"``: fewer than ``min_evals`` eigenvalues: a 1 x n or n x 1 matrix has one.
- ``"rank-deficient"``: fewer than ``min_evals`` eigenvalues are numerically nonzero
  (``numpy.linalg.matrix_rank`` of ``W`` as read, float32 or float64: :math:`\lambda_i >
  \lambda_{\max} (N \epsilon)^2`). A constant matrix is rank 1: no alpha (the power law of one
  eigenvalue is undefined); a rank-r product ``A @ B`` stored in float32 is rank r, its float32
  round-off is not spectrum.
- ``"duplicate-evals"``: more than half of the fitted eigenvalues (those above the fit's 1e-5
  threshold), or of the tail the fit chose, lie within one window of relative width
  :data:`FLAT_RTOL` = 0.1 %: they are equal up to round-off (an orthogonal or scaled identity
  matrix, a layer with a block of equal singular values). A continuous power law gives ties
  zero probability; the KS search would return an alpha of 1e7 or infinity there, a confident
  wrong number.
- ``"fit-failed"``: the fit returned no admissible tail or a non-finite alpha (e.g. fewer than two
  eigenvalues above 1e-5, ``xmax=-k`` dropping too many, an empty "peak" window, a TPL fit that
  does not converge): the fit-based metrics are NaN (``num_pl_spikes`` too), the others
  reported.
- ``"short-tail"`` (``gof=True``): the fitted tail has fewer than 10 eigenvalues, too few
  for the goodness-of-fit tests (their values NaN; alpha reported).
- ``"not-power-law"`` (``gof=True``): the CSN p-value ``pl_pvalue`` is at most 0.1: the tail
  is not a power law, so its alpha does not measure a heavy tail (alpha still reported).
- ``""``: 2 <= alpha <= 6; ``"over-trained"``: alpha < 2; ``"under-trained"``: alpha > 6.

Rows labelled ``too-few-evals``, ``rank-deficient`` or ``duplicate-evals`` keep their scale
metrics (``norm, log_norm, lambda_max, spectral_norm, log_spectral_norm, stable_rank, entropy,
matrix_rank, rank_loss, weak_rank_loss, num_evals``), which mean something for any matrix; the
fit-based ones (``alpha, xmin, xmax, D, sigma, num_pl_spikes, alpha_weighted, log_alpha_norm``,
TPL / MP / detX / randomization) are NaN. No variable is ever infinite (an infinity becomes NaN).

Weights of another dtype than float32/float64 are analysed, not rejected, after an exact upcast
(:func:`_as_float`): bool, integers and floats of at most 16 bits (float16, bfloat16, float8,
int8, ...) to float32, wider integers to float64. The spectrum itself is computed in float64.

Determinism: the same input, options and ``key`` give bit-identical details in any process
(randomization draws only from ``key``; no global random state, clock or hash order is used).

Every label is a member of :class:`rmtkit.errors.RowWarning`.
"""

import math

import jax
import numpy as np
import xarray as xr

from rmtkit._engine.executor import linalg_one_at_a_time
from rmtkit._engine.kernels import (
    ALPHA_METRIC_VARS,
    DETX_VARS,
    FINGER_VARS,
    FIT_VARS,
    GOF_VARS,
    MP_VARS,
    RAND_VARS,
    SPACING_VARS,
    TPL_VARS,
)
from rmtkit._engine.rows import Row
from rmtkit._engine.spectra import layer_esd
from rmtkit.analysis.derived import SPECTRUM_ATTR
from rmtkit.collection.finetune import SKIP_ATTR
from rmtkit.core.conv_fft import FFT_GRID, conv2d_fft_esd
from rmtkit.core.esd import CONV_NORM, oriented_shape, receptive_field
from rmtkit.core.gof import GOF_MIN_TAIL, PL_P_THRESHOLD
from rmtkit.core.metrics import alpha_warning
from rmtkit.core.powerlaw import EVALS_THRESH
from rmtkit.core.validate import is_real_dtype
from rmtkit.errors import SCALE_ONLY_WARNINGS, InvalidWeightsError, RowWarning

__all__ = [
    "FLAT_RTOL",
    "SPECTRUM_MAX",
    "SPECTRUM_MIN",
    "duplicate_heavy",
    "finish_row",
    "plan",
    "read_spectra",
    "read_weights",
    "sizes",
]


def sizes(shape) -> tuple[int, int, int]:
    """``(N, M, rf)`` of a canonical weight shape: a slice oriented :math:`N \\ge M`, and the
    number of kernel slices."""
    n_rows, n_cols = oriented_shape(shape)
    return int(n_rows), int(n_cols), int(receptive_field(shape))


def plan(
    path: str, w: xr.DataArray, *, pool: bool, min_evals: int, max_evals: int | None
) -> list[Row]:
    """The rows of one layer, with the size-based warning (no data read)."""
    n_rows, n_cols, rf = sizes(w.shape)
    if w.attrs.get(SPECTRUM_ATTR) == "conv2d_fft":  # the operator on the FFT grid: one row
        n_rows, n_cols, rf = n_rows * FFT_GRID**2, n_cols * FFT_GRID**2, 1
    per_row = rf * n_cols if pool or rf == 1 else n_cols
    slices = [0] if pool or rf == 1 else list(range(rf))
    warning = str(w.attrs.get(SKIP_ATTR, ""))
    if not warning and max_evals is not None and per_row > max_evals:
        warning = RowWarning.TOO_MANY_EVALS
    rows = [
        Row(
            name=path,
            kind=str(w.attrs.get("kind", "")),
            layer_id=int(w.attrs.get("layer_id", -1)),
            N=n_rows,
            M=n_cols,
            rf=rf,
            slice_id=s,
            n_expected=per_row,
            warning=warning,
            source=str(w.attrs.get("source", "")),
            quant=str(w.attrs.get("quant", "")),
        )
        for s in slices
    ]
    return rows


#: |W| above ``SPECTRUM_MAX / sqrt(W.size)`` would overflow float64 eigenvalues (their sum is
#: :math:`\lVert W \rVert_F^2 \le` size * max|W|^2); |W| below ``SPECTRUM_MIN`` everywhere would
#: underflow them (squares under 1e-300 lose their digits). Only float64 weights get there.
SPECTRUM_MAX = 1e150
SPECTRUM_MIN = 1e-150
#: eigenvalues within this relative distance are equal up to round-off (``duplicate-evals``:
#: a tail of such values would give an alpha above ~1000, or infinite)
FLAT_RTOL = 1e-3


def _as_float(a: np.ndarray) -> np.ndarray:
    """``W`` in a dtype the eigensolvers take: float32 / float64 as they are; bool, integers
    and floats of at most 16 bits (float16, bfloat16, float8, int8, ...) as float32, wider
    integers as float64 -- both exact for every value of those types (int64 beyond 2**53
    aside)."""
    if a.dtype in (np.float32, np.float64):
        return a
    if not is_real_dtype(a.dtype):
        raise InvalidWeightsError(f"W has dtype {a.dtype}; real numbers were expected")
    return a.astype(np.float32 if a.dtype.itemsize <= 2 else np.float64)


def _value_warning(a: np.ndarray) -> str:
    """Why ``W`` cannot be analysed for its values ('' when it can): NaN/Inf, all zero, or
    magnitudes whose eigenvalues leave float64 (one pass of min/max, no temporary)."""
    lo, hi = float(np.min(a)), float(np.max(a))  # NaN propagates through min / max
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return RowWarning.NON_FINITE_WEIGHTS
    top = max(abs(lo), abs(hi))
    if top == 0.0:
        return RowWarning.ALL_ZERO
    if top > SPECTRUM_MAX / math.sqrt(a.size):
        return RowWarning.SPECTRUM_OVERFLOW
    if top < SPECTRUM_MIN:
        return RowWarning.SPECTRUM_UNDERFLOW
    return ""


def _numerical_rank(evals: np.ndarray, n_rows: int, dtype: np.dtype) -> int:
    r"""``numpy.linalg.matrix_rank`` of the (float32 / float64) ``W`` a row comes from: singular
    values :math:`s_i > s_{\max} N \epsilon`, i.e. :math:`\lambda_i > \lambda_{\max}
    (N\epsilon)^2`, :math:`\epsilon` the machine epsilon of ``W``'s dtype (round-off of a
    float32 matrix is not rank)."""
    eps = float(np.finfo(dtype).eps)
    return int(np.count_nonzero(evals > np.max(evals) * (n_rows * eps) ** 2))


def duplicate_heavy(values: np.ndarray) -> bool:
    """More than half of ``values`` (at least 2) lie in one window ``[x, x * (1 +
    FLAT_RTOL)]``: equal up to round-off. A continuous power law gives ties zero probability,
    so such a spectrum (or tail) has no meaningful alpha; a real spectrum has a few eigenvalues
    per 0.1 % window at most."""
    n = values.size
    if n < 2:
        return False
    values = np.sort(values)
    ends = np.searchsorted(values, values * (1.0 + FLAT_RTOL), side="right")
    return bool(2 * np.max(ends - np.arange(n)) > n)


def _spectrum_warning(evals: np.ndarray, n_rows: int, dtype: np.dtype, min_evals: int) -> str:
    """Why a row's (ascending) spectrum is not fitted ('' when it is): too few eigenvalues,
    fewer than ``min_evals`` of them numerically nonzero, or most of the fitted ones equal."""
    if evals.size < min_evals:
        return RowWarning.TOO_FEW_EVALS
    if _numerical_rank(evals, n_rows, dtype) < min_evals:
        return RowWarning.RANK_DEFICIENT
    if duplicate_heavy(evals[evals > EVALS_THRESH]):
        return RowWarning.DUPLICATE_EVALS
    return ""


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def read_weights(w: xr.DataArray) -> tuple[np.ndarray | None, str]:
    """``(W, "")`` as :func:`_as_float` gives it, or ``(None, "read-failed: <reason>")``:
    whatever reading one layer raises becomes its row's warning, the other layers go on."""
    try:
        return _as_float(np.asarray(w.values)), ""
    except Exception as err:  # noqa: BLE001 -- a loader's own error types included
        return None, RowWarning.READ_FAILED.because(_first_line(err))


def read_spectra(
    w: xr.DataArray, rows: list[Row], *, pool: bool, min_evals: int, conv_norm: float = CONV_NORM
):
    """Read ``W``, fill the rows' spectra (or a warning); return the array (or None).

    Never raises for a bad layer: the checks of the module docstring, in its order, turn into
    the rows' ``warning``.
    """
    a, reason = read_weights(w)
    if not reason:
        reason = _value_warning(a)
    if reason:
        for row in rows:
            row.warning = reason
        return None
    mode = w.attrs.get(SPECTRUM_ATTR, "")
    try:
        if mode == "conv2d_fft":
            with jax.enable_x64(True):
                evals = np.asarray(linalg_one_at_a_time(conv2d_fft_esd, a.astype(np.float64)))
        else:
            evals = layer_esd(a, pool=pool, conv_norm=conv_norm)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
        for row in rows:
            row.warning = RowWarning.ESD_FAILED.because(_first_line(err))
        return None
    if evals.ndim == 1:
        evals = evals[None, :]
    for row, e in zip(rows, evals, strict=True):
        row.evals = np.sqrt(e) if mode == "svals" else e  # intra: singular values (WW)
        row.warning = _spectrum_warning(e, row.N, a.dtype, min_evals)
    return a


def finish_row(r: Row) -> None:
    """The row's final values and ``warning`` after the kernels (module docstring): negative
    count sentinels and infinities become NaN; the alpha label, or "duplicate-evals" when most
    of the fitted tail is one value; rows with a :data:`rmtkit.errors.SCALE_ONLY_WARNINGS`
    warning keep their scale metrics only."""
    v = r.values
    for name in ("num_spikes", "detX_num", "num_traps"):
        if v.get(name, 0.0) < 0:
            v[name] = np.nan
    for name, value in v.items():
        if math.isinf(value):  # never a confident infinite number
            v[name] = np.nan
    if r.warning not in SCALE_ONLY_WARNINGS:
        alpha = v["alpha"]
        if math.isfinite(alpha) and duplicate_heavy(
            r.evals[(r.evals >= v["xmin"]) & (r.evals <= v["xmax"])]
        ):
            r.warning = RowWarning.DUPLICATE_EVALS
        else:
            r.warning = alpha_warning(alpha)
            if "pl_pvalue" in v:
                r.warning = _gof_warning(v, r.warning)
    if r.warning in SCALE_ONLY_WARNINGS:
        for name in (
            FIT_VARS
            + ALPHA_METRIC_VARS
            + FINGER_VARS
            + TPL_VARS
            + MP_VARS
            + DETX_VARS
            + RAND_VARS
            + GOF_VARS
            + SPACING_VARS
        ):
            if name in v:
                v[name] = np.nan
    elif r.warning == RowWarning.FIT_FAILED:  # NaN, never a count of 0 (docs/math.md §4)
        for name in FIT_VARS + ALPHA_METRIC_VARS + FINGER_VARS + TPL_VARS + GOF_VARS:
            if name in v:
                v[name] = np.nan
    elif r.warning == RowWarning.SHORT_TAIL:  # no test: never a p-value
        for name in GOF_VARS:
            v[name] = np.nan


def _gof_warning(v: dict, label: str) -> str:
    """The label of a fitted row with ``gof=True`` (docs/math.md §12): ``"short-tail"`` when
    its tail is too short to test, ``"not-power-law"`` when CSN's p-value is at most 0.1,
    else the alpha label."""
    if label == RowWarning.FIT_FAILED:
        return label
    if not v["num_pl_spikes"] >= GOF_MIN_TAIL:
        return RowWarning.SHORT_TAIL
    if v["pl_pvalue"] <= PL_P_THRESHOLD:
        return RowWarning.NOT_POWER_LAW
    return label
