r"""Model-level analysis: a weight collection in, an ``xarray.Dataset`` of per-layer metrics out.

:func:`analyze` streams the layers of a collection (or of anything :func:`rmtkit.load` reads)
one at a time: it reads one ``W``, computes its eigenvalues on the host (:mod:`rmtkit._host`,
the conventions of :func:`rmtkit.esd`: raw units, conv slices pooled times ½), runs the per-layer
extras that need ``W`` itself (randomization), and drops ``W``. The spectra are then grouped by
:func:`rmtkit.bucket_length` (from :data:`MIN_BUCKET` = 256 up), padded with
:func:`rmtkit.pad_spectra`, and every bucket is fitted
by **one** jitted ``jax.vmap`` of :func:`rmtkit.fit_pl` (or ``fit_tpl``) and
:func:`rmtkit.spectral_metrics` (and ``mp_fit``, ``detx``), in float64. The jitted kernels are
cached at module level by (options, bucket length, batch size), and the batch size is fixed per
bucket length, so a 200-layer model compiles a handful of kernels.

The result has one row per layer along dim ``layer`` (one per convolution slice with
``pool=False``, with coordinate ``slice_id``); coordinates ``name`` (node path), ``kind``,
``layer_id``, ``N``, ``M``, ``Q`` (= N/M, :math:`N \ge M` per slice), ``rf`` (kernel slices);
data variables named as in SPEC §4 and WeightWatcher, float, NaN when unavailable, and the string
variable ``warning``. ``details.to_dataframe()`` is the familiar table.

A bad layer never raises; its row carries NaN and a ``warning``:

- ``""``: 2 <= alpha <= 6; ``"over-trained"``: alpha < 2; ``"under-trained"``: alpha > 6.
- ``"fit-failed"``: the fit found no admissible tail (NaN alpha; scale metrics reported).
- ``"too-few-evals"``: fewer than ``min_evals`` eigenvalues, not fitted. The scale metrics
  (``norm, log_norm, lambda_max, spectral_norm, log_spectral_norm, stable_rank, entropy,
  matrix_rank, rank_loss, weak_rank_loss, num_evals``) are still reported, since they mean
  something for any matrix; the alpha-based ones (``alpha, xmin, xmax, D, sigma,
  num_pl_spikes, alpha_weighted, log_alpha_norm``, TPL/MP/detX/randomization) are NaN.
- ``"too-many-evals"``: more than ``max_evals`` eigenvalues; ``W`` is not even read (sizes only).
- ``"non-finite-weights"`` (NaN/Inf in ``W``), ``"all-zero"``: not analysed (sizes only).
- ``"no-base-layer"``, ``"base-shape-mismatch"``: ``base=`` has no partner of that name/shape.
- ``"read-failed: <reason>"``: reading ``W`` raised (e.g. a corrupt tensor; sizes only).

Sizes (``N, M, Q, rf`` and ``num_evals``, the number of eigenvalues of the row's spectrum) are
always reported.
"""

import fnmatch
import functools
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from rmtkit._host import host_esd
from rmtkit.collection import KINDS, iter_layers, sanitize_path
from rmtkit.errors import InvalidArgumentError, RmtkitError
from rmtkit.esd import bucket_length, pad_spectra
from rmtkit.finetune import (
    LORA_MODES,
    SKIP_ATTR,
    delta_collection,
    is_lora_adapter,
    lora_collection,
)
from rmtkit.metrics import alpha_warning, spectral_metrics
from rmtkit.powerlaw import FIX_FINGERS, XMIN_METHODS, fit_pl

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


def _check_options(*, min_evals, max_evals, pool, fit, xmin_method, xmin_max, xmax, fix_fingers,
                   randomize, mp_fit, detx, lora) -> _Options:
    _int = (int, np.integer)
    if isinstance(min_evals, bool) or not isinstance(min_evals, _int) or min_evals < 0:
        raise InvalidArgumentError(f"`min_evals` must be an int >= 0; got {min_evals!r}.")
    if max_evals is not None:
        if isinstance(max_evals, bool) or not isinstance(max_evals, _int) or max_evals < 1:
            raise InvalidArgumentError(
                f"`max_evals` must be None or an int >= 1; got {max_evals!r}.")
        if max_evals < min_evals:
            raise InvalidArgumentError(
                f"`max_evals`={max_evals} is smaller than `min_evals`={min_evals}: no layer "
                "could be analysed.")
    for name, value in (("pool", pool), ("randomize", randomize), ("mp_fit", mp_fit),
                        ("detx", detx)):
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidArgumentError(f"`{name}` must be True or False; got {value!r}.")
    if fit not in FITS:
        raise InvalidArgumentError(
            f"`fit` must be one of {', '.join(map(repr, FITS))}; got {fit!r}.")
    if xmin_method not in XMIN_METHODS:
        raise InvalidArgumentError(
            f"`xmin_method` must be one of {', '.join(map(repr, XMIN_METHODS))}; "
            f"got {xmin_method!r}.")
    if fix_fingers not in FIX_FINGERS:
        raise InvalidArgumentError(
            f"`fix_fingers` must be one of {', '.join(map(repr, FIX_FINGERS))}; "
            f"got {fix_fingers!r}.")
    if not (xmax is None or xmax == "force" or (
            isinstance(xmax, int) and not isinstance(xmax, bool) and xmax < 0)):
        raise InvalidArgumentError(
            f"`xmax` must be None, 'force' or a negative int -k; got {xmax!r}.")
    if xmin_max is not None and not (isinstance(xmin_max, (int, float)) and xmin_max > 0):
        raise InvalidArgumentError(f"`xmin_max` must be None or a number > 0; got {xmin_max!r}.")
    if fit != "PL" and (fix_fingers is not None or xmax is not None):
        raise InvalidArgumentError(
            f"`fix_fingers` and `xmax` apply to fit='PL' only; got fit={fit!r}.")
    if lora not in LORA_MODES:
        raise InvalidArgumentError(
            f"`lora` must be one of {', '.join(map(repr, LORA_MODES))}; got {lora!r}.")
    return _Options(fit=fit, xmin_method=xmin_method,
                    xmin_max=None if xmin_max is None else float(xmin_max), xmax=xmax,
                    fix_fingers=fix_fingers, mp_fit=bool(mp_fit), detx=bool(detx))


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
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
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


def _read_spectra(w: xr.DataArray, rows: list[_Row], *, pool: bool, min_evals: int):
    """Read ``W``, fill the rows' spectra (or a warning); return the array (or None)."""
    try:
        a = np.asarray(w.values)
    except (RmtkitError, OSError, ValueError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        for row in rows:
            row.warning = f"read-failed: {msg}"
        return None
    if not np.all(np.isfinite(a)):
        for row in rows:
            row.warning = "non-finite-weights"
        return None
    if not np.any(a):
        for row in rows:
            row.warning = "all-zero"
        return None
    evals = host_esd(a, pool=pool, conv_norm=CONV_NORM)
    if evals.ndim == 1:
        evals = evals[None, :]
    for row, e in zip(rows, evals, strict=True):
        row.evals = e
        if e.size < min_evals:
            row.warning = "too-few-evals"
    return a


# ---------------------------------------------------------------------------------------------
# Randomization (needs W itself, so it runs while W is in memory).


def _as_key(key):
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    return key


def _randomize_rows(a: np.ndarray, rows: list[_Row], key, *, pool: bool) -> None:
    from rmtkit.traps import correlation_traps

    todo = [r for r in rows if r.evals is not None and r.warning == ""]
    if not todo:
        return
    layer_key = jax.random.fold_in(key, rows[0].layer_id)
    with jax.enable_x64(True):
        if pool or a.ndim == 2:
            stats = [correlation_traps(a, layer_key, conv_norm=CONV_NORM)]
        else:  # one row per slice, each in the units of its unpooled spectrum (x rf/2)
            fan_out, fan_in = a.shape[:2]
            stack = np.moveaxis(a.reshape(fan_out, fan_in, -1), -1, 0)
            gain = math.sqrt(stack.shape[0] * CONV_NORM)
            stats = [correlation_traps(stack[r.slice_id].astype(np.float64) * gain,
                                       jax.random.fold_in(layer_key, r.slice_id))
                     for r in rows]
        for row, st in zip(rows, stats, strict=True):
            if row not in todo:
                continue
            for name in _RAND_VARS:
                row.values[name] = float(getattr(st, name))


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


@functools.cache
def _kernel(what: str, opts: _Options | None = None):
    """A jitted, vmapped per-bucket kernel, cached per option set (jit caches the shapes).

    Separate kernels for the fit + metrics (keyed by the fit options), the MP fit and detX,
    so switching ``mp_fit``/``detx`` on reuses the compiled fit.
    """
    if what == "fit":
        fn = functools.partial(_one, opts=opts)
    elif what == "mp":
        fn = _one_mp
    else:
        fn = _one_detx
    return jax.jit(jax.vmap(fn))


def _fit_rows(rows: list[_Row], opts: _Options) -> None:
    """Fit every row that has a spectrum, bucket by bucket; fill ``row.values``."""
    todo = [r for r in rows if r.evals is not None and r.warning in ("", "too-few-evals")]
    by_length: dict[int, list[_Row]] = {}
    for r in todo:
        by_length.setdefault(bucket_length(r.evals.size, min_length=MIN_BUCKET), []).append(r)
    fit_opts = _Options(fit=opts.fit, xmin_method=opts.xmin_method, xmin_max=opts.xmin_max,
                        xmax=opts.xmax, fix_fingers=opts.fix_fingers)
    with jax.enable_x64(True):
        for length, group in sorted(by_length.items()):
            size = _batch_size(length)
            for start in range(0, len(group), size):
                chunk = group[start:start + size]
                evals, mask = pad_spectra([r.evals for r in chunk], length=length)
                pad = size - len(chunk)
                evals = np.concatenate([evals, np.ones((pad, length))]).astype(np.float64)
                mask = np.concatenate([mask, np.zeros((pad, length), bool)])
                n_rows = np.array([r.N for r in chunk] + [1] * pad, np.float64)
                q = np.array([r.N / r.M for r in chunk] + [1.0] * pad, np.float64)
                m_slice = np.array([r.M for r in chunk] + [1] * pad, np.float64)
                out = dict(_kernel("fit", fit_opts)(evals, mask, n_rows))
                if opts.mp_fit:
                    out.update(_kernel("mp")(evals, mask, q, m_slice))
                if opts.detx:
                    out.update(_kernel("detx")(evals, mask))
                out = jax.device_get(out)
                for i, r in enumerate(chunk):
                    r.values.update({k: float(v[i]) for k, v in out.items()})
    for r in todo:
        v = r.values
        for name in ("num_spikes", "detX_num"):
            if v.get(name, 0.0) < 0:
                v[name] = np.nan
        if r.warning == "too-few-evals":
            for name in _FIT_VARS + _ALPHA_METRICS + _FINGER_VARS + _TPL_VARS + _MP_VARS \
                    + _DETX_VARS:
                if name in v:
                    v[name] = np.nan
        else:
            r.warning = alpha_warning(v["alpha"])


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


def _collect(weights, *, layers, min_evals, max_evals, pool, base, lora, progress,
             randomize=False, key=None, label="rmtkit") -> list[_Row]:
    """Resolve, select and stream the layers: rows with spectra (and randomization)."""
    filt = _parse_layers(layers)
    tree = _resolve(weights, base=base, lora=lora)
    chosen = _select(tree, filt, layers)
    key = _as_key(key) if randomize else None
    bar = _Progress(len(chosen), progress, label)
    rows: list[_Row] = []
    try:
        for path, w in chosen:
            layer_rows = _plan(path, w, pool=pool, min_evals=min_evals, max_evals=max_evals)
            if not layer_rows[0].warning:
                a = _read_spectra(w, layer_rows, pool=pool, min_evals=min_evals)
                if a is not None and randomize:
                    _randomize_rows(a, layer_rows, key, pool=pool)
                del a
            rows.extend(layer_rows)
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
        (scale metrics still reported). WeightWatcher's default is 8.
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
                          lora=lora)
    if randomize and key is not None and not isinstance(key, (int, np.integer)):
        try:
            jax.random.fold_in(key, 0)
        except (TypeError, ValueError) as err:
            raise InvalidArgumentError(
                f"`key` must be a jax.random key or an int seed; got {key!r}.") from err
    rows = _collect(weights, layers=layers, min_evals=min_evals, max_evals=max_evals, pool=pool,
                    base=base, lora=lora, progress=progress, randomize=randomize, key=key,
                    label="analyze")
    _fit_rows(rows, opts)
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
) -> xr.DataArray:
    """The eigenvalue spectra :func:`analyze` fits, as a ``(layer, eval)`` DataArray.

    Rows and coordinates as in :func:`analyze` (with the same ``layers``, ``pool``,
    ``max_evals``); each row holds its spectrum in ascending order (raw units, pooled conv
    slices times ½; unpooled times ``rf/2``), padded with NaN to the longest. Rows that
    :func:`analyze` cannot compute (``max_evals``, non-finite, all-zero) are all NaN; the
    ``warning`` coordinate says why. ``min_evals`` (default 0 here) only sets that label.
    """
    _check_options(min_evals=min_evals, max_evals=max_evals, pool=pool, fit="PL",
                   xmin_method="search", xmin_max=None, xmax=None, fix_fingers=None,
                   randomize=False, mp_fit=False, detx=False, lora=lora)
    rows = _collect(weights, layers=layers, min_evals=min_evals, max_evals=max_evals, pool=pool,
                    base=base, lora=lora, progress=progress, label="spectra")
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


def analyze_many(models: Mapping[str, Any] | Sequence[Any], *, dim: str = "model",
                 **kwargs) -> xr.Dataset:
    """:func:`analyze` each model (mapping name -> model, or a sequence) and :func:`concat`."""
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = [(_describe_input(m) if isinstance(m, (str, bytes)) or hasattr(m, "__fspath__")
                  else str(i), m) for i, m in enumerate(models)]
    if not items:
        raise InvalidArgumentError("`models` is empty.")
    return concat({name: analyze(m, **kwargs) for name, m in items}, dim=dim)


def model_distances(a: Any, b: Any, *, method: str | Sequence[str] = ("frobenius", "cosine", "cka"),
                    layers=None) -> xr.Dataset:
    """Per-layer distances between two models' weights, layers matched by exact node path.

    Returns a Dataset with dim ``layer`` (the matched layers of ``a``, in its order), coords
    ``name, kind, layer_id``, one variable per method (``rmtkit.distances``: "frobenius",
    "cosine", "cka"). Layers absent from ``b`` or of another shape are NaN.
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
            ok = wb is not None and wb.shape == w.shape
            wa_np = np.asarray(w.values, np.float64) if ok else None
            wb_np = np.asarray(wb.values, np.float64) if ok else None
            if ok and not (np.all(np.isfinite(wa_np)) and np.all(np.isfinite(wb_np))):
                ok = False
            for m in methods:
                values[m].append(float(distances(wa_np, wb_np, method=m)) if ok else np.nan)
            if not ok:
                rows[-1].warning = "no-match" if wb is None or wb.shape != w.shape \
                    else "non-finite-weights"
            del wa_np, wb_np
    for r, i in zip(rows, range(len(rows)), strict=True):
        r.values = {m: values[m][i] for m in methods}
    return _dataset(rows, methods, pool=True,
                    attrs={"rmtkit_function": "model_distances", "a": _describe_input(a),
                           "b": _describe_input(b)})
