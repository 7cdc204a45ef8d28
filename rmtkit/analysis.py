r"""Model-level analysis: a weight collection in, an ``xarray.Dataset`` of per-layer metrics out.

:func:`analyze` streams the layers of a collection (or of anything :func:`rmtkit.load` reads):
each layer's work -- read ``W``, check it, compute its eigenvalues (the conventions of
:func:`rmtkit.esd`: raw units, conv slices pooled times ½), run the extras that need ``W``
itself (randomization), drop ``W`` -- is one task (:mod:`rmtkit._exec`), run on local threads
(``$RMTKIT_THREADS``, default all cores, one BLAS thread each; the layers in flight bounded by
a memory budget, ``$RMTKIT_MEMORY``) or, for dask-backed weights with a ``dask.distributed``
client active, on the cluster's workers (``executor=``). Eigenvalues come from host LAPACK in
float64 on a CPU (:mod:`rmtkit._host`) and from the device, float32 first, with a GPU
(:mod:`rmtkit._device`). The spectra are then grouped by
:func:`rmtkit.bucket_length` (from :data:`MIN_BUCKET` = 256 up), padded with
:func:`rmtkit.pad_spectra`, and every bucket is fitted
by **one** jitted ``jax.vmap`` of :func:`rmtkit.fit_pl` (or ``fit_tpl``) and
:func:`rmtkit.spectral_metrics` (and ``mp_fit``, ``detx``, the randomized-spectrum statistics),
in float64, while the layers are still being read. The compiled kernels are kept per
(options, bucket length, batch size) in memory and on disk (:mod:`rmtkit._stored`, in the
folder of :func:`rmtkit._exec.enable_compilation_cache`), and the batch size is fixed per
bucket length, so a 200-layer model compiles a handful of kernels, once per machine. Results
never depend on the executor, the thread count or the scheduling (tested bit for bit).

The result has one row per layer along dim ``layer`` (one per convolution slice with
``pool=False``, with coordinate ``slice_id``); coordinates ``name`` (node path), ``kind``,
``layer_id``, ``N``, ``M``, ``Q`` (= N/M, :math:`N \ge M` per slice), ``rf`` (kernel slices);
data variables named as in SPEC §4 and WeightWatcher, float, NaN when unavailable, and the string
variable ``warning``. ``details.to_dataframe()`` is the familiar table.

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

Sizes (``N, M, Q, rf`` and ``num_evals``, the number of eigenvalues of the row's spectrum) are
always reported.
"""

import fnmatch
import functools
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from rmtkit._exec import (
    dask_client,
    dask_map,
    local_workers,
    ordered_map,
)
from rmtkit._host import footprint, layer_esd, randomized_spectra
from rmtkit._stored import stored_kernel
from rmtkit._validate import is_real_dtype
from rmtkit.collection import KINDS, iter_layers, sanitize_path
from rmtkit.errors import InvalidArgumentError, InvalidWeightsError
from rmtkit.esd import bucket_length, canonical_slices, pad_spectra
from rmtkit.finetune import (
    LORA_MODES,
    SKIP_ATTR,
    delta_collection,
    is_lora_adapter,
    lora_collection,
)
from rmtkit.metrics import alpha_warning, spectral_metrics
from rmtkit.powerlaw import EVALS_THRESH, FIX_FINGERS, XMIN_METHODS, fit_pl

__all__ = [
    "DEFAULT_MIN_EVALS",
    "FITS",
    "analyze",
    "analyze_many",
    "concat",
    "describe",
    "model_distances",
    "select_layers",
    "spectra",
    "summary",
]

#: default ``min_evals``: the power-law fit needs ~50 eigenvalues to mean anything (SPEC §8)
DEFAULT_MIN_EVALS = 50
FITS = ("PL", "TPL", "E_TPL")
#: smallest bucket length of the model-level fits: compiling a kernel costs seconds, fitting a
#: padded 256-value spectrum microseconds, so small spectra share the 256 bucket
MIN_BUCKET = 256
#: pooled convolution spectra are scaled by this (WeightWatcher's ``conv2d_norm``, SPEC §1)
CONV_NORM = 0.5
#: variables averaged by :func:`summary` (SPEC §4, WeightWatcher ``get_summary``)
SUMMARY_VARS = ("log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm",
                "stable_rank", "mp_softrank")

_FIT_VARS = ("alpha", "xmin", "xmax", "D", "sigma", "num_pl_spikes")
_METRIC_VARS = ("num_evals", "alpha_weighted", "log_alpha_norm", "lambda_max", "spectral_norm",
                "norm", "log_norm", "log_spectral_norm", "stable_rank", "entropy", "matrix_rank",
                "rank_loss", "weak_rank_loss")
_ALPHA_METRICS = ("alpha_weighted", "log_alpha_norm")
_FINGER_VARS = ("raw_alpha", "num_fingers")
_TPL_VARS = ("Lambda",)
_RAND_VARS = ("rand_distance", "max_rand_eval", "ww_softrank", "ww_maxdist", "num_traps",
              "rand_sigma_mp", "rand_mp_softrank", "rand_bulk_max")
_MP_VARS = ("sigma_mp", "bulk_min", "bulk_max", "num_spikes", "mp_softrank", "W_scale")
_DETX_VARS = ("detX_num", "detX_val")


# ---------------------------------------------------------------------------------------------
# Options, checked before any work.


@dataclass(frozen=True)
class _Options:
    """Static options of the bucket kernels (hashable: the jit cache key)."""

    fit: str = "PL"
    xmin_method: str = "search"
    xmin_max: float | None = None
    xmax: Any = None
    fix_fingers: str | None = None
    mp_fit: bool = False
    detx: bool = False


def _is_int(value) -> bool:
    """An int (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_choice(value, name: str, allowed: tuple) -> None:
    """Raise unless ``value`` is one of the str / None options ``allowed`` (any other type,
    arrays included, is refused without comparing it)."""
    if not ((value is None or isinstance(value, str)) and value in allowed):
        raise InvalidArgumentError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r:.80}.")


#: most eigenvalues ``xmax=-k`` may drop (a larger k leaves nothing to fit anyway)
_MAX_DROP = 2**31 - 1


def _check_options(*, min_evals, max_evals, pool, fit, xmin_method, xmin_max, xmax, fix_fingers,
                   randomize, mp_fit, detx, lora, progress=False) -> _Options:
    """Check every option's type and range (no layer is read); the kernels' static options."""
    if not _is_int(min_evals) or min_evals < 0:
        raise InvalidArgumentError(f"`min_evals` must be an int >= 0; got {min_evals!r:.80}.")
    if max_evals is not None:
        if not _is_int(max_evals) or max_evals < 1:
            raise InvalidArgumentError(
                f"`max_evals` must be None or an int >= 1; got {max_evals!r:.80}.")
        if max_evals < min_evals:
            raise InvalidArgumentError(
                f"`max_evals`={max_evals} is smaller than `min_evals`={min_evals}: no layer "
                "could be analysed.")
    for name, value in (("pool", pool), ("randomize", randomize), ("mp_fit", mp_fit),
                        ("detx", detx)):
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidArgumentError(f"`{name}` must be True or False; got {value!r:.80}.")
    if not (isinstance(progress, (bool, np.bool_)) or (
            isinstance(progress, str) and progress == "always")):
        raise InvalidArgumentError(
            f"`progress` must be True, False or 'always'; got {progress!r:.80}.")
    _check_choice(fit, "fit", FITS)
    _check_choice(xmin_method, "xmin_method", XMIN_METHODS)
    _check_choice(fix_fingers, "fix_fingers", FIX_FINGERS)
    if not (xmax is None or (isinstance(xmax, str) and xmax == "force") or (
            _is_int(xmax) and -_MAX_DROP <= xmax < 0)):
        raise InvalidArgumentError(
            f"`xmax` must be None, 'force' or a negative int -k (k < 2**31); got {xmax!r:.80}.")
    if xmin_max is not None and not (
            isinstance(xmin_max, (int, float, np.integer, np.floating))
            and not isinstance(xmin_max, (bool, np.bool_))
            and math.isfinite(xmin_max) and xmin_max > 0):
        raise InvalidArgumentError(
            f"`xmin_max` must be None or a finite number > 0; got {xmin_max!r:.80}.")
    if fit != "PL" and (fix_fingers is not None or xmax is not None):
        raise InvalidArgumentError(
            f"`fix_fingers` and `xmax` apply to fit='PL' only; got fit={fit!r}.")
    _check_choice(lora, "lora", LORA_MODES)
    return _Options(fit=fit, xmin_method=xmin_method,
                    xmin_max=None if xmin_max is None else float(xmin_max),
                    xmax=xmax if xmax is None or isinstance(xmax, str) else int(xmax),
                    fix_fingers=fix_fingers, mp_fit=bool(mp_fit), detx=bool(detx))


def _check_key(key) -> None:
    """Raise unless ``key`` is None, an int seed in the int64 range or a ``jax.random`` key."""
    if key is None:
        return
    if isinstance(key, (bool, np.bool_)):
        raise InvalidArgumentError(f"`key` must be a jax.random key or an int seed; got {key!r}.")
    if _is_int(key):
        if not -2**63 <= int(key) < 2**63:
            raise InvalidArgumentError(f"`key` seed {key} is outside the int64 range.")
        return
    try:
        jax.random.fold_in(key, 0)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(
            f"`key` must be a jax.random key or an int seed; got {key!r:.80}.") from err


# ---------------------------------------------------------------------------------------------
# Layer selection: ids, kinds, name patterns; include and exclude (SPEC §8).


@dataclass
class _Filter:
    include_ids: set = field(default_factory=set)
    include_kinds: set = field(default_factory=set)
    include_patterns: list = field(default_factory=list)
    exclude_ids: set = field(default_factory=set)
    exclude_kinds: set = field(default_factory=set)
    exclude_patterns: list = field(default_factory=list)

    @property
    def has_include(self) -> bool:
        return bool(self.include_ids or self.include_kinds or self.include_patterns)


def _filter_items(value, what: str) -> list:
    if isinstance(value, (str, int, np.integer)):
        return [value]
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()
    if isinstance(value, Iterable) and not isinstance(
            value, (Mapping, bytes, bytearray, np.ndarray)):
        return list(value)
    raise InvalidArgumentError(
        f"`layers` {what} must be an int, a str or a list of them; got {value!r}.")


def _parse_layers(layers) -> _Filter:
    """Normalise the ``layers=`` argument (see :func:`select_layers`)."""
    filt = _Filter()
    if layers is None:
        return filt
    if isinstance(layers, Mapping):
        unknown = set(layers) - {"include", "exclude"}
        if unknown:
            raise InvalidArgumentError(
                "`layers` as a dict takes the keys 'include' and 'exclude'; "
                f"got {sorted(unknown)}.")
        groups = [(item, False) for item in _filter_items(layers.get("include", []), "include")]
        groups += [(item, True) for item in _filter_items(layers.get("exclude", []), "exclude")]
    else:
        groups = []
        for item in _filter_items(layers, "list"):
            if isinstance(item, str) and item.startswith("!"):
                groups.append((item[1:], True))
            elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and item < 0:
                groups.append((-int(item), True))  # WeightWatcher: negative ids exclude
            else:
                groups.append((item, False))
    for item, exclude in groups:
        if isinstance(item, bool) or not isinstance(item, (str, int, np.integer)):
            raise InvalidArgumentError(
                f"`layers` entries must be layer ids (int), kinds ({', '.join(KINDS)}) or name "
                f"patterns (str); got {item!r}.")
        if isinstance(item, str) and not item:
            raise InvalidArgumentError("`layers` entries must not be empty strings.")
        if isinstance(item, (int, np.integer)):
            if item < 0:
                raise InvalidArgumentError(
                    f"`layers` id {item} is negative inside an include/exclude list.")
            (filt.exclude_ids if exclude else filt.include_ids).add(int(item))
        elif item in KINDS:
            (filt.exclude_kinds if exclude else filt.include_kinds).add(item)
        else:
            (filt.exclude_patterns if exclude else filt.include_patterns).append(item)
    return filt


_GLOB = set("*?[")


def _name_matches(pattern: str, path: str, source: str) -> bool:
    """Glob patterns match the node path, its dotted form or the source tensor name; plain names
    match the path exactly or as a prefix (``encoder`` selects ``encoder/...``)."""
    names = (path, path.replace("/", "."), source)
    if _GLOB & set(pattern):
        return any(fnmatch.fnmatchcase(n, pattern) for n in names)
    target = sanitize_path(pattern)
    return path == target or path.startswith(target + "/") or source == pattern


def _matches(filt: _Filter, path: str, attrs: Mapping) -> bool:
    lid, kind, source = int(attrs.get("layer_id", -1)), attrs.get("kind"), str(
        attrs.get("source", ""))
    if filt.has_include and not (
            lid in filt.include_ids or kind in filt.include_kinds
            or any(_name_matches(p, path, source) for p in filt.include_patterns)):
        return False
    return not (lid in filt.exclude_ids or kind in filt.exclude_kinds
                or any(_name_matches(p, path, source) for p in filt.exclude_patterns))


def select_layers(tree: xr.DataTree, layers=None) -> list[tuple[str, xr.DataArray]]:
    """``(path, W)`` of the layers of ``tree`` chosen by ``layers``, in ``layer_id`` order.

    ``layers`` is None (all), or an int / str / list of them, or a dict
    ``{"include": [...], "exclude": [...]}``:

    * an int >= 0 is a ``layer_id``; a negative int ``-k`` excludes id ``k`` (WeightWatcher);
    * a str equal to a kind (``"dense"``, ``"conv1d"``, ``"conv2d"``, ``"embedding"``) selects
      that kind;
    * another str is a name pattern: with ``*?[`` a glob (``fnmatch``) against the node path
      (``encoder/layer/0/query``), its dotted form or the source tensor name; otherwise an exact
      path (``.`` or ``/`` separated) or a path prefix; a leading ``!`` excludes.

    A layer is kept when it matches any include item (or there is none) and no exclude item.
    Only node attributes are read, never ``W``.

    Raises
    ------
    InvalidArgumentError
        A malformed filter, or one that selects no layer (the message lists the layers).
    """
    filt = _parse_layers(layers)
    return _select(tree, filt, layers)


def _select(tree, filt, layers) -> list[tuple[str, xr.DataArray]]:
    chosen, everything = [], []
    for path, w in iter_layers(tree):
        everything.append(path)
        if _matches(filt, path, w.attrs):
            chosen.append((path, w))
    if not chosen:
        shown = ", ".join(everything[:10]) + (", ..." if len(everything) > 10 else "")
        raise InvalidArgumentError(f"`layers`={layers!r} selects no layer; the layers are: {shown}")
    return chosen


# ---------------------------------------------------------------------------------------------
# Input resolution: collection, model, base= delta, LoRA adapter.


def _resolve(weights, *, base=None, lora: str = "delta") -> xr.DataTree:
    from rmtkit._load import load

    if is_lora_adapter(weights):
        return lora_collection(weights, base=base, mode=lora)
    tree = load(weights)
    if base is not None:
        base_tree = base if isinstance(base, xr.DataTree) else load(base)
        tree = delta_collection(tree, base_tree)
    return tree


# ---------------------------------------------------------------------------------------------
# Rows: one per layer (or per conv slice), sizes known from the shape alone.


@dataclass
class _Row:
    name: str
    kind: str
    layer_id: int
    N: int
    M: int
    rf: int
    slice_id: int
    n_expected: int
    warning: str = ""
    evals: np.ndarray | None = None
    rand_evals: np.ndarray | None = None
    values: dict = field(default_factory=dict)


def _sizes(shape) -> tuple[int, int, int]:
    n_rows, n_cols = max(shape[0], shape[1]), min(shape[0], shape[1])
    return int(n_rows), int(n_cols), int(math.prod(shape[2:]))


def _plan(path: str, w: xr.DataArray, *, pool: bool, min_evals: int,
          max_evals: int | None) -> list[_Row]:
    """The rows of one layer, with the size-based warning (no data read)."""
    n_rows, n_cols, rf = _sizes(w.shape)
    per_row = rf * n_cols if pool or rf == 1 else n_cols
    slices = [0] if pool or rf == 1 else list(range(rf))
    warning = str(w.attrs.get(SKIP_ATTR, ""))
    if not warning and max_evals is not None and per_row > max_evals:
        warning = "too-many-evals"
    rows = [_Row(name=path, kind=str(w.attrs.get("kind", "")),
                 layer_id=int(w.attrs.get("layer_id", -1)), N=n_rows, M=n_cols, rf=rf,
                 slice_id=s, n_expected=per_row, warning=warning) for s in slices]
    return rows


#: |W| above ``SPECTRUM_MAX / sqrt(W.size)`` would overflow float64 eigenvalues (their sum is
#: :math:`\lVert W \rVert_F^2 \le` size * max|W|^2); |W| below ``SPECTRUM_MIN`` everywhere would
#: underflow them (squares under 1e-300 lose their digits). Only float64 weights get there.
SPECTRUM_MAX = 1e150
SPECTRUM_MIN = 1e-150
#: eigenvalues within this relative distance are equal up to round-off (``duplicate-evals``:
#: a tail of such values would give an alpha above ~1000, or infinite)
FLAT_RTOL = 1e-3
#: warnings of rows reported with their scale metrics only (nothing fitted is kept)
_SCALE_ONLY = ("too-few-evals", "rank-deficient", "duplicate-evals")


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
        return "non-finite-weights"
    top = max(abs(lo), abs(hi))
    if top == 0.0:
        return "all-zero"
    if top > SPECTRUM_MAX / math.sqrt(a.size):
        return "spectrum-overflow"
    if top < SPECTRUM_MIN:
        return "spectrum-underflow"
    return ""


def _numerical_rank(evals: np.ndarray, n_rows: int, dtype: np.dtype) -> int:
    r"""``numpy.linalg.matrix_rank`` of the (float32 / float64) ``W`` a row comes from: singular
    values :math:`s_i > s_{\max} N \epsilon`, i.e. :math:`\lambda_i > \lambda_{\max}
    (N\epsilon)^2`, :math:`\epsilon` the machine epsilon of ``W``'s dtype (round-off of a
    float32 matrix is not rank)."""
    eps = float(np.finfo(dtype).eps)
    return int(np.count_nonzero(evals > np.max(evals) * (n_rows * eps) ** 2))


def _duplicate_heavy(values: np.ndarray) -> bool:
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
        return "too-few-evals"
    if _numerical_rank(evals, n_rows, dtype) < min_evals:
        return "rank-deficient"
    if _duplicate_heavy(evals[evals > EVALS_THRESH]):
        return "duplicate-evals"
    return ""


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def _read_weights(w: xr.DataArray) -> tuple[np.ndarray | None, str]:
    """``(W, "")`` as :func:`_as_float` gives it, or ``(None, "read-failed: <reason>")``:
    whatever reading one layer raises becomes its row's warning, the other layers go on."""
    try:
        return _as_float(np.asarray(w.values)), ""
    except Exception as err:  # noqa: BLE001 -- a loader's own error types included
        return None, f"read-failed: {_first_line(err)}"


def _read_spectra(w: xr.DataArray, rows: list[_Row], *, pool: bool, min_evals: int):
    """Read ``W``, fill the rows' spectra (or a warning); return the array (or None).

    Never raises for a bad layer: the checks of the module docstring, in its order, turn into
    the rows' ``warning``.
    """
    a, reason = _read_weights(w)
    if not reason:
        reason = _value_warning(a)
    if reason:
        for row in rows:
            row.warning = reason
        return None
    try:
        evals = layer_esd(a, pool=pool, conv_norm=CONV_NORM)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
        for row in rows:
            row.warning = f"esd-failed: {_first_line(err)}"
        return None
    if evals.ndim == 1:
        evals = evals[None, :]
    for row, e in zip(rows, evals, strict=True):
        row.evals = e
        row.warning = _spectrum_warning(e, row.N, a.dtype, min_evals)
    return a


# ---------------------------------------------------------------------------------------------
# Randomization (needs W itself, so it runs while W is in memory).


def _as_key(key):
    """A typed ``jax.random`` key from ``None`` (key 0), an int seed, a raw or a typed key."""
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    try:
        arr = jnp.asarray(key)
        if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
            return key
        if arr.dtype == jnp.uint32:
            return jax.random.wrap_key_data(arr)  # legacy raw key
    except (TypeError, ValueError):
        pass
    raise InvalidArgumentError(
        f"`key` must be a jax.random key (jax.random.key(seed)) or an int seed; got {key!r}.")


def _portable_key(key) -> tuple[np.ndarray, str]:
    """(raw key data, implementation name) of a key: plain data for threads and dask tasks."""
    key = _as_key(key)
    return np.asarray(jax.random.key_data(key)), str(jax.random.key_impl(key))


def _randomization_unit(a: np.ndarray, layer_key, slice_id: int | None = None):
    r"""The matrix a row's randomization permutes, and its key (SPEC §6).

    Pooled (or dense) rows, ``slice_id=None``: the whole layer ``a`` with the layer key
    (``randomized_spectra`` permutes each slice and pools the spectra times ``conv_norm``).
    Unpooled rows: slice ``slice_id`` alone, times ``sqrt(rf * conv_norm)`` (the units of its
    row), key ``fold_in(layer_key, slice_id)``. Shared with the plots, which draw the same
    randomization.
    """
    if slice_id is None:
        return a, layer_key
    stack = canonical_slices(a, np)
    gain = math.sqrt(stack.shape[0] * CONV_NORM)
    return stack[slice_id].astype(np.float64) * gain, jax.random.fold_in(layer_key, slice_id)


def _randomize_rows(a: np.ndarray, rows: list[_Row], key, *, pool: bool) -> None:
    r"""Randomized spectra of a layer's rows (SPEC §6), on the host, while ``W`` is in memory.

    Layer key ``fold_in(key, layer_id)``; each row randomizes :func:`_randomization_unit`. The
    statistics are computed in the bucket kernels (:func:`_one_rand`).
    """
    todo = [r for r in rows if r.evals is not None and r.warning == ""]
    if not todo:
        return
    layer_key = jax.random.fold_in(key, rows[0].layer_id)
    pooled = pool or a.ndim == 2  # one row, rows[0], for the whole layer
    for row in ([rows[0]] if pooled else rows):
        if row not in todo:
            continue
        mat, k = _randomization_unit(a, layer_key, None if pooled else row.slice_id)
        row.rand_evals, row.values["max_rand_eval"] = randomized_spectra(
            mat, k, conv_norm=CONV_NORM)


# ---------------------------------------------------------------------------------------------
# Bucketed fits: one jitted vmap per (options, bucket length, batch).


def _batch_size(length: int) -> int:
    """Fixed rows per kernel call for a bucket length (bounded memory, one compile per length)."""
    if length <= 512:
        return 16
    if length <= 2048:
        return 8
    if length <= 8192:
        return 2
    return 1


def _one(evals, mask, n_rows, opts: _Options) -> dict:
    """The fit and the SPEC §4 metrics of one row (traced under vmap)."""
    out = {}
    if opts.fit == "PL":
        f = fit_pl(evals, mask, xmin_method=opts.xmin_method, xmin_max=opts.xmin_max,
                   xmax=opts.xmax, fix_fingers=opts.fix_fingers)
        alpha = f.alpha
        out.update(alpha=f.alpha, xmin=f.xmin, xmax=f.xmax, D=f.D, sigma=f.sigma,
                   num_pl_spikes=f.num_pl_spikes)
        if opts.fix_fingers is not None:
            out.update(raw_alpha=f.raw_alpha, num_fingers=f.num_fingers)
    else:
        from rmtkit.tpl import fit_tpl

        method = "search" if opts.fit == "TPL" else "peak"
        t = fit_tpl(evals, mask, xmin_method=method, xmin_max=opts.xmin_max)
        alpha = t.alpha
        top = jnp.max(jnp.where(mask, evals, -jnp.inf))
        out.update(alpha=t.alpha, Lambda=t.Lambda, xmin=t.xmin,
                   xmax=jnp.where(t.ok, top, jnp.nan), D=t.D, sigma=t.sigma,
                   num_pl_spikes=t.n_tail)
    m = spectral_metrics(evals, mask, alpha=alpha, n_rows=n_rows)
    for name in _METRIC_VARS:
        out[name] = m.lambda_max if name == "spectral_norm" else getattr(m, name)
    return {k: jnp.asarray(v).astype(jnp.float64) for k, v in out.items()}


def _one_mp(evals, mask, q, m_slice) -> dict:
    """Marchenko-Pastur fit of one row, with the slice's Q and M (SPEC §5)."""
    from rmtkit.mp import mp_fit

    mp = mp_fit(evals, mask, Q=q, M=m_slice)
    out = dict(sigma_mp=mp.sigma, bulk_min=mp.bulk_min, bulk_max=mp.bulk_max,
               num_spikes=jnp.where(mp.ok, mp.num_spikes, -1), mp_softrank=mp.mp_softrank,
               W_scale=mp.W_scale)
    return {k: jnp.asarray(v).astype(jnp.float64) for k, v in out.items()}


def _one_detx(evals, mask) -> dict:
    """detX tail of one row (SPEC §8)."""
    from rmtkit.svd import detx

    d = detx(evals, mask)
    return {"detX_num": jnp.where(d.ok, d.detX_num, -1).astype(jnp.float64),
            "detX_val": jnp.asarray(d.detX_val).astype(jnp.float64)}


def _one_rand(evals, mask, rand_evals, max_rand_eval, q, m_slice) -> dict:
    r"""Randomization statistics of one row (SPEC §6, as :func:`rmtkit.correlation_traps`):
    the MP fit of the randomized spectrum (``num_traps`` = its spikes), ``rand_distance``,
    ``ww_softrank`` = max_rand_eval / :math:`\lambda_{\max}`, ``ww_maxdist``."""
    from rmtkit.mp import mp_fit
    from rmtkit.traps import _rand_distance

    fit = mp_fit(rand_evals, mask, Q=q, M=m_slice, margin="ww")
    lam_max = jnp.max(jnp.where(mask, evals, -jnp.inf))
    ok = fit.ok & jnp.isfinite(lam_max) & (lam_max > 0)
    safe_max = jnp.where(ok, lam_max, 1.0)
    out = dict(rand_distance=_rand_distance(evals, rand_evals, mask, "ww", 100),
               max_rand_eval=max_rand_eval, ww_softrank=max_rand_eval / safe_max,
               ww_maxdist=lam_max - max_rand_eval,
               num_traps=jnp.where(fit.ok, fit.num_spikes, -1), rand_sigma_mp=fit.sigma,
               rand_mp_softrank=fit.mp_softrank, rand_bulk_max=fit.bulk_max)
    nan = jnp.asarray(jnp.nan, jnp.float64)
    return {k: jnp.where(ok | (k == "rand_distance"), jnp.asarray(v).astype(jnp.float64), nan)
            for k, v in out.items()}


@functools.cache
def _kernel_fn(what: str, opts: _Options | None = None):
    """The vmapped per-bucket kernel (not jitted), one per option set.

    Separate kernels for the fit + metrics (keyed by the fit options), the MP fit and detX,
    so switching ``mp_fit``/``detx`` on reuses the compiled fit.
    """
    if what == "fit":
        fn = functools.partial(_one, opts=opts)
    elif what == "mp":
        fn = _one_mp
    elif what == "rand":
        fn = _one_rand
    else:
        fn = _one_detx
    return jax.vmap(fn)


def _rand_inputs(chunk: list[_Row], length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded randomized spectra and ``max_rand_eval`` of a chunk (rows without: NaN)."""
    rand = np.ones((size, length))
    top = np.full(size, np.nan)
    for i, r in enumerate(chunk):
        if r.rand_evals is not None:
            rand[i, :r.rand_evals.size] = r.rand_evals
            top[i] = r.values["max_rand_eval"]
    return rand, top


def _fit_options(opts: _Options) -> _Options:
    """The options the fit kernel depends on (its cache key)."""
    return _Options(fit=opts.fit, xmin_method=opts.xmin_method, xmin_max=opts.xmin_max,
                    xmax=opts.xmax, fix_fingers=opts.fix_fingers)


def _run_kernels(opts: _Options, evals, mask, n_rows, q, m_slice, rand=None) -> dict:
    """The kernels of one padded chunk (fit + metrics, and MP / detX / randomization as
    asked), as host arrays by variable name."""
    out = dict(_call_kernel("fit", _fit_options(opts), evals, mask, n_rows))
    if opts.mp_fit:
        out.update(_call_kernel("mp", None, evals, mask, q, m_slice))
    if opts.detx:
        out.update(_call_kernel("detx", None, evals, mask))
    if rand is not None:
        out.update(_call_kernel("rand", None, evals, mask, rand[0], rand[1], q, m_slice))
    return jax.device_get(out)


def _call_kernel(what: str, opts: _Options | None, *args):
    """Run the bucket kernel :func:`_kernel_fn` through its stored executable
    (:func:`rmtkit._stored.stored_kernel`: a fresh process loads it instead of tracing,
    lowering and compiling it). Same computation, same results as ``jax.jit`` of it."""
    return stored_kernel(_kernel_fn(what, opts), f"{what}|{opts!r}", *args)(*args)


def _fit_chunk(chunk: list[_Row], length: int, size: int, opts: _Options) -> None:
    """Run the kernels on one chunk of rows of a bucket (padded to ``size`` rows of
    ``length``); fill ``row.values``."""
    evals, mask = pad_spectra([r.evals for r in chunk], length=length)
    pad = size - len(chunk)
    evals = np.concatenate([evals, np.ones((pad, length))]).astype(np.float64)
    mask = np.concatenate([mask, np.zeros((pad, length), bool)])
    n_rows = np.array([r.N for r in chunk] + [1] * pad, np.float64)
    q = np.array([r.N / r.M for r in chunk] + [1.0] * pad, np.float64)
    m_slice = np.array([r.M for r in chunk] + [1] * pad, np.float64)
    rand = None
    if any(r.rand_evals is not None for r in chunk):
        rand = _rand_inputs(chunk, length, size)
    with jax.enable_x64(True):
        out = _run_kernels(opts, evals, mask, n_rows, q, m_slice, rand)
    for i, r in enumerate(chunk):
        r.values.update({k: float(v[i]) for k, v in out.items()
                         if r.rand_evals is not None or k not in _RAND_VARS})


class _Fitter:
    """Fits rows bucket by bucket while the layers are still being read (:func:`_collect`'s
    ``on_rows``): a bucket's chunk of :func:`_batch_size` rows is fitted as soon as it is
    full, so the kernels run while the worker threads compute the next spectra.

    Rows arrive in layer order, so each chunk holds the same rows as if they were all
    collected first (the results do not depend on the timing); :meth:`finish` fits the
    partial chunks and finishes every fitted row.
    """

    def __init__(self, opts: _Options):
        self.opts = opts
        self.waiting: dict[int, list[_Row]] = {}
        self.fitted: list[_Row] = []

    def add(self, rows: list[_Row]) -> None:
        """Queue the rows that have a spectrum to fit; fit any bucket chunk now full."""
        for r in rows:
            if r.evals is None or r.warning not in ("",) + _SCALE_ONLY:
                continue
            self.fitted.append(r)
            length = bucket_length(r.evals.size, min_length=MIN_BUCKET)
            group = self.waiting.setdefault(length, [])
            group.append(r)
            if len(group) == _batch_size(length):
                _fit_chunk(group, length, _batch_size(length), self.opts)
                self.waiting[length] = []

    def finish(self) -> None:
        """Fit the partial chunks; the final values and warnings of every fitted row."""
        for length, group in sorted(self.waiting.items()):
            if group:
                _fit_chunk(group, length, _batch_size(length), self.opts)
        self.waiting.clear()
        for r in self.fitted:
            _finish_row(r)


def _finish_row(r: _Row) -> None:
    """The row's final values and ``warning`` after the kernels (module docstring): negative
    count sentinels and infinities become NaN; the alpha label, or "duplicate-evals" when most
    of the fitted tail is one value; rows with a :data:`_SCALE_ONLY` warning keep their scale
    metrics only."""
    v = r.values
    for name in ("num_spikes", "detX_num", "num_traps"):
        if v.get(name, 0.0) < 0:
            v[name] = np.nan
    for name, value in v.items():
        if math.isinf(value):  # never a confident infinite number
            v[name] = np.nan
    if r.warning not in _SCALE_ONLY:
        alpha = v["alpha"]
        if math.isfinite(alpha) and _duplicate_heavy(
                r.evals[(r.evals >= v["xmin"]) & (r.evals <= v["xmax"])]):
            r.warning = "duplicate-evals"
        else:
            r.warning = alpha_warning(alpha)
    if r.warning in _SCALE_ONLY:
        for name in _FIT_VARS + _ALPHA_METRICS + _FINGER_VARS + _TPL_VARS + _MP_VARS \
                + _DETX_VARS + _RAND_VARS:
            if name in v:
                v[name] = np.nan
    elif r.warning == "fit-failed":  # NaN, never a count of 0 (SPEC §4)
        for name in _FIT_VARS + _ALPHA_METRICS + _FINGER_VARS + _TPL_VARS:
            if name in v:
                v[name] = np.nan


# ---------------------------------------------------------------------------------------------
# Progress bar (stderr, no dependency).


class _Progress:
    def __init__(self, total: int, enabled, label: str):
        if enabled == "always":
            self.on = True
        elif enabled is True:
            self.on = bool(getattr(sys.stderr, "isatty", lambda: False)())
        else:
            self.on = False
        self.total, self.label, self.done, self.t0 = total, label, 0, time.monotonic()

    def step(self, name: str) -> None:
        self.done += 1
        if not self.on:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {name[:40]:<40}")
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        if self.on:
            sys.stderr.write(f"\r{self.label}: {self.done} layers in "
                             f"{time.monotonic() - self.t0:.1f} s{note}".ljust(90) + "\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Dataset assembly.


def _dataset(rows: list[_Row], variables: Sequence[str], *, pool: bool, attrs: dict) -> xr.Dataset:
    n = len(rows)
    coords = {
        "name": ("layer", np.array([r.name for r in rows], dtype=object).astype(str)),
        "kind": ("layer", np.array([r.kind for r in rows], dtype=object).astype(str)),
        "layer_id": ("layer", np.array([r.layer_id for r in rows], dtype=np.int64)),
        "N": ("layer", np.array([r.N for r in rows], dtype=np.int64)),
        "M": ("layer", np.array([r.M for r in rows], dtype=np.int64)),
        "Q": ("layer", np.array([r.N / r.M for r in rows], dtype=np.float64)),
        "rf": ("layer", np.array([r.rf for r in rows], dtype=np.int64)),
    }
    if not pool:
        coords["slice_id"] = ("layer", np.array([r.slice_id for r in rows], dtype=np.int64))
    data = {}
    for name in variables:
        col = np.full(n, np.nan)
        for i, r in enumerate(rows):
            if name in r.values:
                col[i] = r.values[name]
            elif name == "num_evals":
                col[i] = r.evals.size if r.evals is not None else r.n_expected
        data[name] = ("layer", col)
    data["warning"] = ("layer", np.array([r.warning for r in rows], dtype=object).astype(str))
    if n == 0:
        data["warning"] = ("layer", np.zeros(0, dtype="<U1"))
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _variables(opts: _Options, randomize: bool) -> list[str]:
    names = list(_FIT_VARS) + list(_METRIC_VARS)
    if opts.fix_fingers is not None:
        names += _FINGER_VARS
    if opts.fit != "PL":
        names += _TPL_VARS
    if randomize:
        names += _RAND_VARS
    if opts.mp_fit:
        names += _MP_VARS
    if opts.detx:
        names += _DETX_VARS
    return names


def _attr(value) -> str | int | float:
    """netCDF-safe attribute value."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    return str(value)


def _describe_input(obj) -> str:
    if obj is None:
        return "None"
    if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        return str(obj)
    return type(obj).__name__


# ---------------------------------------------------------------------------------------------
# Public API.


def _cost(item: tuple[str, xr.DataArray]) -> int:
    """Bytes a layer needs while its spectrum is computed (:func:`rmtkit._host.footprint`)."""
    w = item[1]
    return footprint(w.shape, w.dtype.itemsize) if w.ndim >= 2 else 0


def _layer_rows(item: tuple[str, xr.DataArray], *, pool: bool, min_evals: int,
                max_evals: int | None, randomize: bool, key) -> tuple[str, list[_Row]]:
    """One layer's work: plan its rows, read and check ``W``, its spectra (and randomization).

    Runs on a local worker thread or a dask worker; ``key`` is :func:`_portable_key`'s.
    """
    path, w = item
    layer_rows = _plan(path, w, pool=pool, min_evals=min_evals, max_evals=max_evals)
    if not layer_rows[0].warning:
        a = _read_spectra(w, layer_rows, pool=pool, min_evals=min_evals)
        if a is not None and randomize:
            data, impl = key
            _randomize_rows(a, layer_rows, jax.random.wrap_key_data(data, impl=impl), pool=pool)
    return path, layer_rows


def _remote_layer(path: str, dims: tuple, attrs: dict, array: np.ndarray,
                  options: dict) -> tuple[str, list[_Row]]:
    """:func:`_layer_rows` of one layer's array on a dask worker (rebuilt as a DataArray)."""
    return _layer_rows((path, xr.DataArray(array, dims=dims, attrs=attrs)), **options)


def _collect(weights, *, layers, min_evals, max_evals, pool, base, lora, progress,
             randomize=False, key=None, label="rmtkit", executor=None,
             on_rows: Callable[[list[_Row]], None] | None = None) -> list[_Row]:
    """Resolve, select and stream the layers: rows with spectra (and randomization).

    The layers run on local threads (:func:`rmtkit._exec.ordered_map`) or, when
    :func:`rmtkit._exec.dask_client` finds a cluster for them, as one task per layer on its
    workers (:func:`rmtkit._exec.dask_map`); rows come back in layer order either way, each
    layer's handed to ``on_rows`` (on this thread) as soon as it is back.
    """
    filt = _parse_layers(layers)
    tree = _resolve(weights, base=base, lora=lora)
    chosen = _select(tree, filt, layers)
    key = _portable_key(key) if randomize else None
    options = dict(pool=pool, min_evals=min_evals, max_evals=max_evals, randomize=randomize,
                   key=key)
    client = dask_client(executor, dask_backed=any(w.chunks is not None for _, w in chosen))
    if client is None:
        results = ordered_map(functools.partial(_layer_rows, **options), chosen, cost=_cost)
    else:
        results = dask_map(client, _remote_layer, [
            (path, w.dims, dict(w.attrs), w.data if w.chunks is not None else w.chunk().data,
             options) for path, w in chosen])
    bar = _Progress(len(chosen), progress, label)
    rows: list[_Row] = []
    try:
        for path, layer_rows in results:
            rows.extend(layer_rows)
            if on_rows is not None:
                on_rows(layer_rows)
            bar.step(path)
    finally:
        bar.close()
    return rows


def analyze(
    weights: Any,
    *,
    layers=None,
    min_evals: int = DEFAULT_MIN_EVALS,
    max_evals: int | None = None,
    pool: bool = True,
    fit: str = "PL",
    xmin_method: str = "search",
    xmin_max: float | None = None,
    xmax: Any = None,
    fix_fingers: str | None = None,
    randomize: bool = False,
    mp_fit: bool = False,
    detx: bool = False,
    base: Any = None,
    lora: str = "delta",
    key: Any = None,
    progress: bool | str = True,
    executor: Any = None,
) -> xr.Dataset:
    r"""HT-SR metrics of every layer of a model: one row per layer, one variable per metric.

    Parameters
    ----------
    weights : collection, model object or path
        An ``xarray.DataTree`` weight collection, or anything :func:`rmtkit.load` reads (a
        torch / keras / ONNX model, a state dict, a pytree, a model file or folder), or a
        LoRA / PEFT adapter folder (see ``base``, ``lora``).
    layers : optional
        Which layers (ids, kinds, name patterns; include / exclude): :func:`select_layers`.
    min_evals : int, default 50
        Layers (rows) with fewer eigenvalues are not fitted: NaN alpha, ``"too-few-evals"``
        (scale metrics still reported); with fewer numerically nonzero ones,
        ``"rank-deficient"`` (module docstring). WeightWatcher's default is 8.
    max_evals : int, optional
        Layers with more eigenvalues are skipped without reading them (``"too-many-evals"``).
    pool : bool, default True
        Convolution kernels: one pooled spectrum of all ``rf`` slices times ½ (True), or one row
        per slice (coordinate ``slice_id``), each spectrum times ``rf/2`` (False). SPEC §1.
    fit : {"PL", "TPL", "E_TPL"}
        Power law (:func:`rmtkit.fit_pl`), truncated power law (``rmtkit.fit_tpl``, adds
        ``Lambda``), or TPL with the "peak" xmin range.
    xmin_method, xmin_max, xmax, fix_fingers
        Options of :func:`rmtkit.fit_pl` (``fix_fingers="clip_xmax"`` adds ``raw_alpha`` and
        ``num_fingers``). ``xmin_max`` also bounds E_TPL's window.
    randomize : bool
        Randomize each layer (element permutation, ``rmtkit.correlation_traps``) and add
        ``rand_distance, max_rand_eval, ww_softrank, ww_maxdist, num_traps, rand_sigma_mp,
        rand_mp_softrank, rand_bulk_max``.
    mp_fit : bool
        Marchenko-Pastur fit (``rmtkit.mp_fit``, slice ``Q`` and ``M``): ``sigma_mp, bulk_min,
        bulk_max, num_spikes, mp_softrank, W_scale``.
    detx : bool
        detX / ERG tail (``rmtkit.detx``): ``detX_num, detX_val``.
    base : model, path or collection, optional
        Analyse :math:`W - W_{\rm base}` per layer, matched by exact node path; with a LoRA
        adapter as ``weights``, the base model of the adapter (:mod:`rmtkit.finetune`).
    lora : {"delta", "merged"}, default "delta"
        For a LoRA adapter: analyse :math:`\Delta W = (\alpha/r) B A` alone, or the merged
        weights :math:`W_{\rm base} + \Delta W` of every base layer (needs ``base``).
    key : jax.random key or int, optional
        Randomness of ``randomize``; layer ``i`` uses ``fold_in(key, layer_id)``. Default
        ``jax.random.key(0)``: results are reproducible.
    progress : bool or "always", default True
        A progress bar on stderr when it is a terminal (``"always"``: in any case).
    executor : None, "auto", "threads", "dask" or distributed.Client
        Where the per-layer work (read ``W``, its eigenvalues, its randomization) runs. Default:
        local threads (``$RMTKIT_THREADS``, default all cores; layers in flight bounded by
        ``$RMTKIT_MEMORY``, default 512 MiB), or, when the weights are dask-backed (e.g.
        ``rmtkit.load(path).chunk()``) and a ``dask.distributed`` client is active, one task
        per layer on the cluster's workers. ``"dask"`` or a ``Client`` forces the cluster
        (see :func:`rmtkit._exec.dask_client`). The result is the same Dataset either way.

    Returns
    -------
    xarray.Dataset
        Dim ``layer``; coordinates ``name, kind, layer_id, N, M, Q, rf`` (+ ``slice_id``);
        float variables ``alpha, xmin, xmax, D, sigma, num_pl_spikes, num_evals,
        alpha_weighted, log_alpha_norm, lambda_max, spectral_norm, norm, log_norm,
        log_spectral_norm, stable_rank, entropy, matrix_rank, rank_loss, weak_rank_loss`` (+ the
        optional groups above); string ``warning`` (module docstring). ``attrs`` record the
        options.

    Raises
    ------
    InvalidArgumentError
        Unknown options or a bad ``layers`` filter, before any layer is read.
    UnsupportedModelError, CorruptModelError, MissingDataError
        The model cannot be read at all (a bad *layer* never raises).

    Examples
    --------
    >>> details = analyze(rmtkit.data_path(), progress=False)  # doctest: +SKIP
    >>> details.to_dataframe()[["name", "alpha", "warning"]]    # doctest: +SKIP
    """
    opts = _check_options(min_evals=min_evals, max_evals=max_evals, pool=pool, fit=fit,
                          xmin_method=xmin_method, xmin_max=xmin_max, xmax=xmax,
                          fix_fingers=fix_fingers, randomize=randomize, mp_fit=mp_fit, detx=detx,
                          lora=lora, progress=progress)
    dask_client(executor)  # a bad executor fails before any work
    _check_key(key)
    fitter = _Fitter(opts)
    rows = _collect(weights, layers=layers, min_evals=min_evals, max_evals=max_evals, pool=pool,
                    base=base, lora=lora, progress=progress, randomize=randomize, key=key,
                    label="analyze", executor=executor, on_rows=fitter.add)
    fitter.finish()
    attrs = {
        "rmtkit_function": "analyze", "model": _describe_input(weights), "fit": fit,
        "xmin_method": xmin_method, "xmin_max": xmin_max, "xmax": xmax,
        "fix_fingers": fix_fingers, "min_evals": min_evals, "max_evals": max_evals,
        "pool": pool, "conv_norm": CONV_NORM, "units": "raw (lambda = s^2, no 1/N)",
        "randomize": randomize, "mp_fit": mp_fit, "detx": detx,
        "key": ("jax.random.key(0)" if key is None else _describe_input(key)) if randomize
        else "None",
        "base": _describe_input(base), "lora": lora if is_lora_adapter(weights) else "None",
    }
    from rmtkit import __version__

    attrs["rmtkit_version"] = __version__
    return _dataset(rows, _variables(opts, randomize), pool=pool,
                    attrs={k: _attr(v) for k, v in attrs.items()})


def describe(
    weights: Any,
    *,
    layers=None,
    min_evals: int = DEFAULT_MIN_EVALS,
    max_evals: int | None = None,
    pool: bool = True,
    base: Any = None,
    lora: str = "delta",
) -> xr.Dataset:
    """The rows :func:`analyze` would give, without reading any weight.

    Same dim, coordinates and ``layer`` order as :func:`analyze`; variables ``num_evals`` (the
    number of eigenvalues of the row's spectrum, from the shape) and ``warning``
    (``"too-few-evals"``, ``"too-many-evals"``, or a ``base=`` mismatch; value-based warnings need
    the data and are left empty).
    """
    _check_options(min_evals=min_evals, max_evals=max_evals, pool=pool, fit="PL",
                   xmin_method="search", xmin_max=None, xmax=None, fix_fingers=None,
                   randomize=False, mp_fit=False, detx=False, lora=lora)
    filt = _parse_layers(layers)
    tree = _resolve(weights, base=base, lora=lora)
    rows = []
    for path, w in _select(tree, filt, layers):
        for r in _plan(path, w, pool=pool, min_evals=min_evals, max_evals=max_evals):
            if not r.warning and r.n_expected < min_evals:
                r.warning = "too-few-evals"
            r.values["num_evals"] = float(r.n_expected)
            rows.append(r)
    attrs = {"rmtkit_function": "describe", "model": _describe_input(weights),
             "min_evals": min_evals, "max_evals": max_evals, "pool": pool,
             "base": _describe_input(base)}
    return _dataset(rows, ["num_evals"], pool=pool, attrs={k: _attr(v) for k, v in attrs.items()})


def spectra(
    weights: Any,
    *,
    layers=None,
    min_evals: int = 0,
    max_evals: int | None = None,
    pool: bool = True,
    base: Any = None,
    lora: str = "delta",
    progress: bool | str = False,
    executor: Any = None,
) -> xr.DataArray:
    """The eigenvalue spectra :func:`analyze` fits, as a ``(layer, eval)`` DataArray.

    Rows and coordinates as in :func:`analyze` (with the same ``layers``, ``pool``,
    ``max_evals``, ``executor``); each row holds its spectrum in ascending order (raw units,
    pooled conv slices times ½; unpooled times ``rf/2``), padded with NaN to the longest. Rows that
    :func:`analyze` cannot compute (``max_evals``, non-finite, all-zero) are all NaN; the
    ``warning`` coordinate says why. ``min_evals`` (default 0 here) only sets that label.
    """
    _check_options(min_evals=min_evals, max_evals=max_evals, pool=pool, fit="PL",
                   xmin_method="search", xmin_max=None, xmax=None, fix_fingers=None,
                   randomize=False, mp_fit=False, detx=False, lora=lora, progress=progress)
    dask_client(executor)  # a bad executor fails before any work
    rows = _collect(weights, layers=layers, min_evals=min_evals, max_evals=max_evals, pool=pool,
                    base=base, lora=lora, progress=progress, label="spectra", executor=executor)
    length = max((r.evals.size for r in rows if r.evals is not None), default=0)
    out = np.full((len(rows), length), np.nan)
    for i, r in enumerate(rows):
        if r.evals is not None:
            out[i, : r.evals.size] = r.evals
    ds = _dataset(rows, [], pool=pool, attrs={})
    coords = {k: v for k, v in ds.coords.items()}
    coords["warning"] = ds["warning"]
    return xr.DataArray(out, dims=("layer", "eval"), coords=coords, name="evals",
                        attrs={"units": "raw (lambda = s^2, no 1/N)", "pool": str(pool),
                               "conv_norm": CONV_NORM, "model": _describe_input(weights)})


def summary(details: xr.Dataset, *, dim: str = "layer") -> xr.Dataset:
    """Means over layers of the SPEC §4 summary metrics, ignoring NaN (WW ``get_summary``).

    ``log_norm, alpha, alpha_weighted, log_alpha_norm, log_spectral_norm, stable_rank`` (and
    ``mp_softrank`` when present). Other dims (``model``, ``epoch``) are kept, so the summary
    of concatenated results compares models. A variable that is NaN on every layer gives NaN.
    """
    if not isinstance(details, xr.Dataset):
        raise InvalidArgumentError(
            "`details` must be the xarray.Dataset of rmtkit.analyze; "
            f"got {type(details).__name__}.")
    if dim not in details.dims:
        raise InvalidArgumentError(f"`details` has no dim {dim!r}; dims are {tuple(details.dims)}.")
    names = [v for v in SUMMARY_VARS if v in details.data_vars]
    out = {}
    for name in names:
        da = details[name]
        count = da.notnull().sum(dim)
        total = da.fillna(0.0).sum(dim)
        out[name] = (total / count.where(count > 0)).drop_vars(
            [c for c in da.coords if dim in da[c].dims], errors="ignore")
    return xr.Dataset(out, attrs={"rmtkit_function": "summary", "dim": dim})


# ---------------------------------------------------------------------------------------------
# Several models / checkpoints.


def _fill_value(dtype):
    if dtype.kind in "US":
        return ""
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    if dtype.kind == "O":
        return ""
    return np.nan


def _pad_layers(ds: xr.Dataset, n: int) -> xr.Dataset:
    """``ds`` with its ``layer`` dim padded to ``n`` rows ('' / -1 / NaN fill)."""
    k = ds.sizes.get("layer", 0)
    if k == n:
        return ds
    def pad(var: xr.Variable) -> xr.Variable:
        if "layer" not in var.dims:
            return var
        axis = var.dims.index("layer")
        values = np.asarray(var.values)
        shape = list(values.shape)
        shape[axis] = n - k
        fill = np.full(shape, _fill_value(values.dtype), dtype=values.dtype
                       if values.dtype.kind not in "US" else values.dtype)
        return xr.Variable(var.dims, np.concatenate([values, fill], axis=axis), var.attrs)

    data = {name: pad(v.variable) for name, v in ds.data_vars.items()}
    coords = {name: pad(c.variable) for name, c in ds.coords.items()}
    return xr.Dataset(data, coords=coords, attrs=ds.attrs)


def concat(results: Mapping[str, xr.Dataset] | Sequence[xr.Dataset], *, dim: str = "model",
           names: Sequence[str] | None = None) -> xr.Dataset:
    """Stack per-model results (of :func:`analyze`) along a new dim (``model``, ``epoch``, ...).

    Models with fewer rows are padded (NaN metrics, ``""`` names, ``-1`` ids); the per-layer
    coordinates become 2-D ``(dim, layer)``. The result saves with ``to_netcdf``.
    """
    if isinstance(results, Mapping):
        names, results = list(results.keys()), list(results.values())
    results = list(results)
    if not results:
        raise InvalidArgumentError("`results` is empty: nothing to concatenate.")
    names = list(range(len(results))) if names is None else list(names)
    if len(names) != len(results):
        raise InvalidArgumentError(
            f"{len(names)} names for {len(results)} results: give one name per result.")
    n = max(ds.sizes.get("layer", 0) for ds in results)
    padded = [_pad_layers(ds, n) for ds in results]
    import pandas as pd

    return xr.concat(padded, dim=pd.Index(names, name=dim), data_vars="all", coords="all",
                     compat="equals", join="outer", combine_attrs="drop_conflicts")


def _analyze_task(model: Any, **kwargs) -> xr.Dataset:
    """:func:`analyze` as one task of a cluster: one thread (the cluster runs tasks in
    parallel; threads inside a task would oversubscribe the worker's cores)."""
    with local_workers(1):
        return analyze(model, **kwargs)


def analyze_many(models: Mapping[str, Any] | Sequence[Any], *, dim: str = "model",
                 executor: Any = None, **kwargs) -> xr.Dataset:
    """:func:`analyze` each model (mapping name -> model, or a sequence) and :func:`concat`.

    With a ``dask.distributed`` client active (or ``executor="dask"`` / a ``Client``), each
    model is one task on the cluster's workers (a path is read where its task runs: the
    workers need the files), the results are gathered in order; ``executor="threads"`` keeps
    everything in this process. ``kwargs`` are :func:`analyze`'s.
    """
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = [(_describe_input(m) if isinstance(m, (str, bytes)) or hasattr(m, "__fspath__")
                  else str(i), m) for i, m in enumerate(models)]
    if not items:
        raise InvalidArgumentError("`models` is empty.")
    client = dask_client(executor, dask_backed=True)
    if client is None:
        results = {name: analyze(m, executor=executor, **kwargs) for name, m in items}
    else:
        kwargs = dict(kwargs, progress=False, executor="threads")
        done = dask_map(client, functools.partial(_analyze_task, **kwargs),
                        [(m,) for _, m in items])
        results = dict(zip([name for name, _ in items], done, strict=True))
    return concat(results, dim=dim)


def model_distances(a: Any, b: Any, *, method: str | Sequence[str] = ("frobenius", "cosine", "cka"),
                    layers=None) -> xr.Dataset:
    """Per-layer distances between two models' weights, layers matched by exact node path.

    Returns a Dataset with dim ``layer`` (the matched layers of ``a``, in its order), coords
    ``name, kind, layer_id``, one variable per method (``rmtkit.distances``: "frobenius",
    "cosine", "cka"). Layers absent from ``b`` or of another shape are NaN with ``warning``
    "no-match"; a layer either model cannot read, "read-failed: ..." (the others go on); one
    with non-finite weights, "non-finite-weights".
    """
    from rmtkit._load import load
    from rmtkit.distance import distances

    methods = [method] if isinstance(method, str) else list(method)
    for m in methods:
        if m not in ("frobenius", "cosine", "cka"):
            raise InvalidArgumentError(
                f"`method` must be 'frobenius', 'cosine' or 'cka' (or a list); got {m!r}.")
    filt = _parse_layers(layers)
    tree_a, tree_b = load(a), load(b)
    other = dict(iter_layers(tree_b))
    rows, values = [], {m: [] for m in methods}
    with jax.enable_x64(True):
        for path, w in _select(tree_a, filt, layers):
            n_rows, n_cols, rf = _sizes(w.shape)
            rows.append(_Row(name=path, kind=str(w.attrs.get("kind", "")),
                             layer_id=int(w.attrs.get("layer_id", -1)), N=n_rows, M=n_cols,
                             rf=rf, slice_id=0, n_expected=rf * n_cols))
            wb = other.get(path)
            wa_np = wb_np = None
            if wb is None or wb.shape != w.shape:
                reason = "no-match"
            else:  # a layer either model cannot read is its row's warning, as in analyze
                wa_np, reason = _read_weights(w)
                if not reason:
                    wb_np, reason = _read_weights(wb)
                if not reason and not (np.all(np.isfinite(wa_np))
                                       and np.all(np.isfinite(wb_np))):
                    reason = "non-finite-weights"
            rows[-1].warning = reason
            for m in methods:
                values[m].append(np.nan if reason else float(distances(
                    np.asarray(wa_np, np.float64), np.asarray(wb_np, np.float64), method=m)))
            del wa_np, wb_np
    for r, i in zip(rows, range(len(rows)), strict=True):
        r.values = {m: values[m][i] for m in methods}
    return _dataset(rows, methods, pool=True,
                    attrs={"rmtkit_function": "model_distances", "a": _describe_input(a),
                           "b": _describe_input(b)})
