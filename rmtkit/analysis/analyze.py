r"""Model-level analysis: a weight collection in, an ``xarray.Dataset`` of per-layer metrics out.

:func:`analyze` streams the layers of a collection (or of anything :func:`rmtkit.load` reads):
each layer's work -- read ``W``, check it, compute its eigenvalues (the conventions of
:func:`rmtkit.esd`: raw units, conv slices pooled times ½), run the extras that need ``W``
itself (randomization), drop ``W`` -- is one task (:mod:`rmtkit.analysis.collect`,
:mod:`rmtkit._engine.executor`), run on local threads
(``$RMTKIT_THREADS``, default all cores, one BLAS thread each; the layers in flight bounded by
a memory budget, ``$RMTKIT_MEMORY``) or, for dask-backed weights with a ``dask.distributed``
client active, on the cluster's workers (``executor=``). Eigenvalues come from host LAPACK in
float64 on a CPU (:mod:`rmtkit._engine.host`) and from the device, float32 first, with a GPU
(:mod:`rmtkit._engine.device`). The spectra are then grouped by
:func:`rmtkit.bucket_length` (from :data:`rmtkit._engine.kernels.FIT_BUCKET_MIN` = 256 up),
padded with
:func:`rmtkit.pad_spectra`, and every bucket is fitted
by **one** jitted ``jax.vmap`` of :func:`rmtkit.fit_pl` (or ``fit_tpl``) and
:func:`rmtkit.spectral_metrics` (and ``mp_fit``, ``detx``, the randomized-spectrum statistics),
in float64, while the layers are still being read. The compiled kernels are kept per
(options, bucket length, batch size) in memory and on disk (:mod:`rmtkit._engine.stored`, in the
folder of :func:`rmtkit._engine.executor.enable_compilation_cache`), and the batch size is fixed per
bucket length, so a 200-layer model compiles a handful of kernels, once per machine. Results
never depend on the executor, the thread count or the scheduling (tested bit for bit).

The result has one row per layer along dim ``layer`` (one per convolution slice with
``pool=False``, with coordinate ``slice_id``); coordinates ``name`` (node path), ``kind``,
``layer_id``, ``N``, ``M``, ``Q`` (= N/M, :math:`N \ge M` per slice), ``rf`` (kernel slices);
data variables named as in docs/math.md §4 and WeightWatcher, float, NaN when unavailable, and
the string variable ``warning`` (:class:`rmtkit.errors.RowWarning`; the checks behind each
label are in :mod:`rmtkit.analysis.checks`). ``details.to_dataframe()`` is the familiar table.

Determinism: the same input, options and ``key`` give bit-identical details in any process
(randomization draws only from ``key``; no global random state, clock or hash order is used).
"""

from typing import Any

import numpy as np
import xarray as xr

from rmtkit._engine.executor import dask_client
from rmtkit._engine.fitter import Fitter
from rmtkit._engine.rows import Row
from rmtkit.analysis.checks import finish_row, plan
from rmtkit.analysis.collect import collect
from rmtkit.analysis.dataset import rows_dataset
from rmtkit.analysis.inputs import describe_input, resolve
from rmtkit.analysis.options import DEFAULT_MIN_EVALS, check_options
from rmtkit.analysis.select import parse_layers, select
from rmtkit.collection.finetune import is_lora_adapter
from rmtkit.core import validate
from rmtkit.core.esd import CONV_NORM
from rmtkit.errors import SCALE_ONLY_WARNINGS, InvalidArgumentError, RowWarning

__all__ = ["SUMMARY_VARS", "analyze", "describe", "spectra", "summary"]

#: variables averaged by :func:`summary` (docs/math.md §4, WeightWatcher ``get_summary``)
SUMMARY_VARS = (
    "log_norm",
    "alpha",
    "alpha_weighted",
    "log_alpha_norm",
    "log_spectral_norm",
    "stable_rank",
    "mp_softrank",
)
#: the units of every spectrum of an analysis
UNITS = "raw (lambda = s^2, no 1/N)"


def _check_sizes_only(*, min_evals, max_evals, pool, lora, progress=False) -> None:
    """The checks of the options of the functions that fit nothing (:func:`describe`,
    :func:`spectra`)."""
    check_options(
        min_evals=min_evals,
        max_evals=max_evals,
        pool=pool,
        fit="PL",
        xmin_method="search",
        xmin_max=None,
        xmax=None,
        fix_fingers=None,
        randomize=False,
        mp_fit=False,
        detx=False,
        lora=lora,
        progress=progress,
    )


class _FitAsRead:
    """The rows to fit go to the :class:`rmtkit._engine.fitter.Fitter` as each layer comes
    back (:func:`rmtkit.analysis.collect.collect`'s ``on_rows``); :meth:`finish` fits the rest
    and labels every fitted row (:func:`rmtkit.analysis.checks.finish_row`)."""

    def __init__(self, opts):
        self.fitter = Fitter(opts)
        self.fitted: list[Row] = []

    def __call__(self, rows: list[Row]) -> None:
        todo = [
            r
            for r in rows
            if r.evals is not None and r.warning in (RowWarning.NONE, *SCALE_ONLY_WARNINGS)
        ]
        self.fitted.extend(todo)
        self.fitter.add(todo)

    def finish(self) -> None:
        self.fitter.finish()
        for r in self.fitted:
            finish_row(r)


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
        per slice (coordinate ``slice_id``), each spectrum times ``rf/2`` (False). docs/math.md §1.
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
        ``$RMTKIT_MEMORY``, default twice the largest layer's bytes and at least 512 MiB), or,
        when the weights are dask-backed (e.g. ``rmtkit.load(path).chunk()``) and a
        ``dask.distributed`` client is active, one task per layer on the cluster's workers.
        ``"dask"`` or a ``Client`` forces the cluster (see
        :func:`rmtkit._exec.dask_client`). The result is the same Dataset either way.

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
    opts = check_options(
        min_evals=min_evals,
        max_evals=max_evals,
        pool=pool,
        fit=fit,
        xmin_method=xmin_method,
        xmin_max=xmin_max,
        xmax=xmax,
        fix_fingers=fix_fingers,
        randomize=randomize,
        mp_fit=mp_fit,
        detx=detx,
        lora=lora,
        progress=progress,
    )
    dask_client(executor)  # a bad executor fails before any work
    validate.key_option(key)
    fits = _FitAsRead(opts)
    rows = collect(
        weights,
        layers=layers,
        min_evals=min_evals,
        max_evals=max_evals,
        pool=pool,
        base=base,
        lora=lora,
        progress=progress,
        randomize=randomize,
        key=key,
        label="analyze",
        executor=executor,
        on_rows=fits,
    )
    fits.finish()
    attrs = {
        "rmtkit_function": "analyze",
        "model": describe_input(weights),
        "fit": fit,
        "xmin_method": xmin_method,
        "xmin_max": xmin_max,
        "xmax": xmax,
        "fix_fingers": fix_fingers,
        "min_evals": min_evals,
        "max_evals": max_evals,
        "pool": pool,
        "conv_norm": CONV_NORM,
        "units": UNITS,
        "randomize": randomize,
        "mp_fit": mp_fit,
        "detx": detx,
        "key": ("jax.random.key(0)" if key is None else describe_input(key))
        if randomize
        else "None",
        "base": describe_input(base),
        "lora": lora if is_lora_adapter(weights) else "None",
    }
    import rmtkit

    attrs["rmtkit_version"] = rmtkit.__version__
    return rows_dataset(rows, opts.variables(randomize), pool=pool, attrs=attrs)


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
    _check_sizes_only(min_evals=min_evals, max_evals=max_evals, pool=pool, lora=lora)
    filt = parse_layers(layers)
    tree = resolve(weights, base=base, lora=lora)
    rows = []
    for path, w in select(tree, filt, layers):
        for r in plan(path, w, pool=pool, min_evals=min_evals, max_evals=max_evals):
            if not r.warning and r.n_expected < min_evals:
                r.warning = RowWarning.TOO_FEW_EVALS
            r.values["num_evals"] = float(r.n_expected)
            rows.append(r)
    attrs = {
        "rmtkit_function": "describe",
        "model": describe_input(weights),
        "min_evals": min_evals,
        "max_evals": max_evals,
        "pool": pool,
        "base": describe_input(base),
    }
    return rows_dataset(rows, ["num_evals"], pool=pool, attrs=attrs)


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
    randomize: bool = False,
    key: Any = None,
) -> xr.DataArray:
    """The eigenvalue spectra :func:`analyze` fits, as a ``(layer, eval)`` DataArray.

    Rows and coordinates as in :func:`analyze` (with the same ``layers``, ``pool``,
    ``max_evals``, ``executor``); each row holds its spectrum in ascending order (raw units,
    pooled conv slices times ½; unpooled times ``rf/2``), padded with NaN to the longest. Rows that
    :func:`analyze` cannot compute (``max_evals``, non-finite, all-zero) are all NaN; the
    ``warning`` coordinate says why. ``min_evals`` (default 0 here) only sets that label.

    With ``randomize=True`` the coordinates ``rand_evals`` (``(layer, eval)``: the spectrum of
    the row's randomized weights, the draw :func:`analyze` measures with the same ``key``) and
    ``max_rand_eval`` (its largest eigenvalue over the replicas) are added; rows with a warning
    have NaN there.
    """
    _check_sizes_only(
        min_evals=min_evals, max_evals=max_evals, pool=pool, lora=lora, progress=progress
    )
    validate.flag(randomize, "randomize")
    dask_client(executor)  # a bad executor fails before any work
    validate.key_option(key)
    rows = collect(
        weights,
        layers=layers,
        min_evals=min_evals,
        max_evals=max_evals,
        pool=pool,
        base=base,
        lora=lora,
        progress=progress,
        randomize=randomize,
        key=key,
        label="spectra",
        executor=executor,
    )
    length = max((r.evals.size for r in rows if r.evals is not None), default=0)
    ds = rows_dataset(rows, [], pool=pool, attrs={})
    coords = {k: v for k, v in ds.coords.items()}
    coords["warning"] = ds["warning"]
    if randomize:
        coords["rand_evals"] = (("layer", "eval"), _padded([r.rand_evals for r in rows], length))
        coords["max_rand_eval"] = (
            "layer",
            np.array([r.values.get("max_rand_eval", np.nan) for r in rows], np.float64),
        )
    return xr.DataArray(
        _padded([r.evals for r in rows], length),
        dims=("layer", "eval"),
        coords=coords,
        name="evals",
        attrs={
            "units": UNITS,
            "pool": str(pool),
            "conv_norm": CONV_NORM,
            "model": describe_input(weights),
        },
    )


def _padded(spectra: list[np.ndarray | None], length: int) -> np.ndarray:
    """``(len(spectra), length)`` float64, each spectrum first, NaN elsewhere (None: all NaN)."""
    out = np.full((len(spectra), length), np.nan)
    for i, e in enumerate(spectra):
        if e is not None:
            out[i, : e.size] = e
    return out


def summary(details: xr.Dataset, *, dim: str = "layer") -> xr.Dataset:
    """Means over layers of the docs/math.md §4 summary metrics, ignoring NaN (WW
    ``get_summary``).

    ``log_norm, alpha, alpha_weighted, log_alpha_norm, log_spectral_norm, stable_rank`` (and
    ``mp_softrank`` when present). Other dims (``model``, ``epoch``) are kept, so the summary
    of concatenated results compares models. A variable that is NaN on every layer gives NaN.
    """
    if not isinstance(details, xr.Dataset):
        raise InvalidArgumentError(
            f"`details` must be the xarray.Dataset of rmtkit.analyze; got {type(details).__name__}."
        )
    if dim not in details.dims:
        raise InvalidArgumentError(f"`details` has no dim {dim!r}; dims are {tuple(details.dims)}.")
    names = [v for v in SUMMARY_VARS if v in details.data_vars]
    out = {}
    for name in names:
        da = details[name]
        count = da.notnull().sum(dim)
        total = da.fillna(0.0).sum(dim)
        out[name] = (total / count.where(count > 0)).drop_vars(
            [c for c in da.coords if dim in da[c].dims], errors="ignore"
        )
    return xr.Dataset(out, attrs={"rmtkit_function": "summary", "dim": dim})
