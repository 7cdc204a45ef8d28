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

import functools
from typing import Any

import jax
import numpy as np
import xarray as xr

from rmtkit._engine.executor import dask_client
from rmtkit._engine.fitter import Fitter
from rmtkit._engine.rows import Row
from rmtkit.analysis.checks import finish_row, plan
from rmtkit.analysis.collect import collect
from rmtkit.analysis.dataset import rows_dataset
from rmtkit.analysis.derived import conv2d_fft_layers, intra_layers, stacked_layers
from rmtkit.analysis.inputs import describe_input, resolve
from rmtkit.analysis.options import DEFAULT_MIN_EVALS, DEFAULT_N_BOOT, check_options
from rmtkit.analysis.select import parse_layers, select
from rmtkit.collection.finetune import is_lora_adapter
from rmtkit.core import validate
from rmtkit.core.esd import CONV_NORM
from rmtkit.core.gof import PL_P_THRESHOLD
from rmtkit.core.metrics import WEAK_RANK_TOL
from rmtkit.core.vectors import VECTOR_METRICS, bulk_tail
from rmtkit.errors import SCALE_ONLY_WARNINGS, InvalidArgumentError, RowWarning

__all__ = [
    "SUMMARY_VARS",
    "SV_VARS",
    "VECTOR_VARS",
    "analyze",
    "derive",
    "describe",
    "spectra",
    "summary",
]

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


def _check_sizes_only(*, min_evals, max_evals, pool, lora, progress=False, **derived) -> None:
    """The checks of the options of the functions that fit nothing (:func:`describe`,
    :func:`spectra`); ``derived``: the options of the derived analyses (``conv2d_fft``,
    ``intra``, ``stacked``)."""
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
        **derived,
    )


def _key_impl(key) -> str:
    """The PRNG implementation of the ``key`` option (checked later by ``as_key``): JAX's
    default for a seed, without building a key (the first key of a process costs its
    compilation), else the given key's."""
    import jax

    if key is None or validate.is_int(key):
        return str(jax.config.jax_default_prng_impl)
    try:
        return str(jax.random.key_impl(validate.as_key(key)))
    except Exception:  # noqa: BLE001 -- a bad key is refused by validate.as_key below
        return "threefry2x32"


class _FitAsRead:
    """The rows to fit go to the :class:`rmtkit._engine.fitter.Fitter` as each layer comes
    back (:func:`rmtkit.analysis.collect.collect`'s ``on_rows``); :meth:`finish` fits the rest
    and labels every fitted row (:func:`rmtkit.analysis.checks.finish_row`)."""

    def __init__(self, opts, key=None):
        self.fitter = Fitter(opts, key)
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
    gof: bool = False,
    n_boot: int = DEFAULT_N_BOOT,
    base: Any = None,
    lora: str = "delta",
    key: Any = None,
    progress: bool | str = True,
    executor: Any = None,
    max_fingers: int = 10,
    finger_thresh: float = 1.0,
    tolerance: float = WEAK_RANK_TOL,
    conv2d_norm: bool = True,
    singular_values: bool = False,
    spacing: bool = False,
    vectors: bool = False,
    inverse: bool = False,
    conv2d_fft: bool = False,
    intra: bool = False,
    sparsify: bool = True,
    stacked: bool = False,
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
    gof : bool
        Is each layer's tail a power law at all? (docs/math.md §12; ``fit="PL"`` without
        ``xmax`` / ``fix_fingers``.) Adds the CSN goodness-of-fit p-value ``pl_pvalue``
        (:func:`rmtkit.pl_pvalue`, ``n_boot`` replicates, every row's refitted in its
        bucket's kernel) and its Monte-Carlo error ``pl_pvalue_se``, and the likelihood ratios
        of :func:`rmtkit.pl_compare` against the lognormal, exponential, stretched
        exponential and truncated power law: ``R_lognormal, p_lognormal, R_exponential,
        p_exponential, R_stretched_exp, p_stretched_exp, R_tpl, p_tpl`` (R > 0 favours the
        power law). A row with ``pl_pvalue <= 0.1`` is labelled ``"not-power-law"``, one whose
        tail has fewer than 10 eigenvalues ``"short-tail"`` (NaN test values).
    n_boot : int, default 2500
        Bootstrap replicates of ``gof`` (CSN: 2,500 give the p-value to +-0.01).
    base : model, path or collection, optional
        Analyse :math:`W - W_{\rm base}` per layer, matched by exact node path; with a LoRA
        adapter as ``weights``, the base model of the adapter (:mod:`rmtkit.finetune`).
    lora : {"delta", "merged"}, default "delta"
        For a LoRA adapter: analyse :math:`\Delta W = (\alpha/r) B A` alone, or the merged
        weights :math:`W_{\rm base} + \Delta W` of every base layer (needs ``base``).
    key : jax.random key or int, optional
        Randomness of ``randomize`` (layer ``i`` uses ``fold_in(key, layer_id)``) and of the
        ``gof`` bootstrap (:func:`rmtkit._engine.fitter.gof_keys`). Default
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
    max_fingers, finger_thresh : int, float, default 10, 1.0
        Knobs of ``fix_fingers="clip_xmax"`` (:func:`rmtkit.fit_pl`; WeightWatcher's names and
        defaults).
    tolerance : float, default 1e-6
        ``weak_rank_loss`` counts the eigenvalues below it (WeightWatcher's ``tolerance``).
    conv2d_norm : bool, default True
        Scale convolution spectra as docs/math.md §1 (pooled slices times ½, unpooled ones
        times ``rf/2``); False: not at all (WeightWatcher's ``conv2d_norm=False``).
    singular_values : bool
        Add ``sv_max``, ``sv_min``: :math:`\sqrt{\lambda_{\max}}`, :math:`\sqrt{\lambda_{\min}}`
        of the row's spectrum (WeightWatcher's columns).
    spacing : bool
        Level spacing of the bulk (eigenvalues below ``xmin``; :func:`rmtkit.level_spacing`,
        docs/math.md §11.2): ``mean_spacing_ratio`` (:math:`\langle\tilde r\rangle`, 0.53
        GOE, 0.39 Poisson), ``spacing_ks_wigner``, ``spacing_ks_poisson`` (WeightWatcher's
        ``deltas``, which only plots).
    vectors : bool
        Eigenvector localization (:func:`rmtkit.eigenvector_metrics`, docs/math.md §11.1):
        ``{bulk,tail}_{mean,var}_{vec_entropy,loc_ratio,part_ratio}`` over the eigenvectors
        below / above ``xmin`` (WeightWatcher's columns).
    inverse : bool
        Fit the inverse ESD, :math:`1/\lambda` of the positive eigenvalues (WeightWatcher's
        ``inverse``); every spectral column describes it.
    conv2d_fft : bool
        Conv2d layers are analysed by the spectrum of their periodic convolution operator on a
        32 x 32 grid (:func:`rmtkit.conv2d_fft_esd`, Sedghi et al. 2019): one row, ``N``, ``M``
        of the operator (times 1024), ``rf`` 1, no ``conv_norm``.
    intra, sparsify : bool
        Analyse the products of consecutive dense layers instead of the layers
        (:func:`rmtkit.intra_matrix`, docs/math.md §11.4; rows ``"<a>.X.<b>"``, spectrum the
        singular values, WeightWatcher's convention); ``sparsify`` multiplies in a random 0/1
        mask drawn from ``key``.
    stacked : bool
        Analyse one matrix: every selected layer standardised and stacked
        (:func:`rmtkit.stacked_matrix`; one row ``"stacked"``).

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
        max_fingers=max_fingers,
        finger_thresh=finger_thresh,
        tolerance=tolerance,
        spacing=spacing,
        vectors=vectors,
        inverse=inverse,
        conv2d_fft=conv2d_fft,
        intra=intra,
        sparsify=sparsify,
        stacked=stacked,
        gof=gof,
        n_boot=n_boot,
        key_impl=_key_impl(key),
    )
    validate.flag(conv2d_norm, "conv2d_norm")
    validate.flag(singular_values, "singular_values")
    dask_client(executor)  # a bad executor fails before any work
    # the key is built only when a goodness-of-fit bootstrap needs it (a start-up cost)
    typed_key = validate.as_key(key) if gof else validate.key_option(key)
    fits = _FitAsRead(opts, typed_key if gof else None)
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
        conv2d_norm=conv2d_norm,
        inverse=inverse,
        vectors=vectors,
        derive=derive(
            intra=intra, sparsify=sparsify, stacked=stacked, conv2d_fft=conv2d_fft, key=key
        ),
    )
    fits.finish()
    variables = opts.variables(randomize)
    if singular_values:
        _singular_values(rows)
        variables += SV_VARS
    if vectors:
        _vector_summaries(rows)
        variables += VECTOR_VARS
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
        "conv_norm": CONV_NORM if conv2d_norm else 1.0,
        "units": UNITS,
        "randomize": randomize,
        "mp_fit": mp_fit,
        "detx": detx,
        "gof": gof,
        "n_boot": n_boot if gof else "None",
        "key": ("jax.random.key(0)" if key is None else describe_input(key))
        if randomize or gof
        else "None",
        "base": describe_input(base),
        "lora": lora if is_lora_adapter(weights) else "None",
    }
    if fix_fingers is not None:
        attrs.update(max_fingers=max_fingers, finger_thresh=finger_thresh)
    if tolerance != WEAK_RANK_TOL:
        attrs["tolerance"] = tolerance
    for name, value in (
        ("spacing", spacing),
        ("vectors", vectors),
        ("inverse", inverse),
        ("conv2d_fft", conv2d_fft),
        ("intra", intra),
        ("stacked", stacked),
    ):
        if value:
            attrs[name] = True
    if intra:
        attrs["sparsify"] = sparsify
    import rmtkit

    attrs["rmtkit_version"] = rmtkit.__version__
    return rows_dataset(rows, variables, pool=pool, attrs=attrs)


#: ``singular_values=True``
SV_VARS = ("sv_max", "sv_min")
#: ``vectors=True``: WeightWatcher's column names
VECTOR_VARS = tuple(
    f"{part}_{stat}_{name}"
    for name in VECTOR_METRICS
    for part in ("bulk", "tail")
    for stat in ("mean", "var")
)


def derive(*, intra=False, sparsify=True, stacked=False, conv2d_fft=False, key=None):
    """The transform of the selected layers (:mod:`rmtkit.analysis.derived`), or None."""
    if stacked:
        return stacked_layers
    if intra:
        return functools.partial(intra_layers, sparsify=sparsify, key=key)
    if conv2d_fft:
        return conv2d_fft_layers
    return None


def _singular_values(rows: list[Row]) -> None:
    """``sv_max``, ``sv_min`` of every row with a spectrum (square roots of its extremes)."""
    for r in rows:
        if r.evals is not None and r.evals.size:
            r.values["sv_max"] = float(np.sqrt(max(float(r.evals[-1]), 0.0)))
            r.values["sv_min"] = float(np.sqrt(max(float(r.evals[0]), 0.0)))


def _vector_summaries(rows: list[Row]) -> None:
    """The bulk / tail means and variances of each eigenvector metric of the rows that have
    them (``xmin`` of the row's fit splits them; NaN without a fit).

    The tail is the eigenvectors of the ``#(λ >= xmin)`` largest eigenvalues of the row's own
    spectrum (the one the fit chose ``xmin`` from): the eigenvalues of the eigenvector
    decomposition equal those only to rounding, and compared with ``xmin`` itself the vector
    at ``xmin`` would fall on either side by a last bit.
    """
    with jax.enable_x64(True):
        for r in rows:
            vm = r.extras.get("vectors")
            if vm is None:
                continue
            xmin = r.values.get("xmin", np.nan)
            lam = np.sort(np.asarray(vm["evals"], np.float64))
            n_tail = int(np.sum(r.evals >= xmin)) if r.evals is not None else 0
            if np.isfinite(xmin) and 0 < n_tail <= lam.size:
                xmin = lam[-n_tail]  # the same split, in the decomposition's own eigenvalues
            for name in VECTOR_METRICS:
                stats = bulk_tail(vm[name], vm["evals"], xmin)
                for field, value in stats._asdict().items():
                    part, stat = field.split("_")
                    r.values[f"{part}_{stat}_{name}"] = float(value)


def describe(
    weights: Any,
    *,
    layers=None,
    min_evals: int = DEFAULT_MIN_EVALS,
    max_evals: int | None = None,
    pool: bool = True,
    base: Any = None,
    lora: str = "delta",
    conv2d_fft: bool = False,
    intra: bool = False,
    stacked: bool = False,
) -> xr.Dataset:
    """The rows :func:`analyze` would give, without reading any weight.

    Same dim, coordinates and ``layer`` order as :func:`analyze`; variables ``num_evals`` (the
    number of eigenvalues of the row's spectrum, from the shape) and ``warning``
    (``"too-few-evals"``, ``"too-many-evals"``, or a ``base=`` mismatch; value-based warnings need
    the data and are left empty). ``conv2d_fft``, ``intra``, ``stacked``: the rows of those
    analyses (:func:`analyze`).
    """
    _check_sizes_only(
        min_evals=min_evals,
        max_evals=max_evals,
        pool=pool,
        lora=lora,
        conv2d_fft=conv2d_fft,
        intra=intra,
        stacked=stacked,
    )
    filt = parse_layers(layers)
    tree = resolve(weights, base=base, lora=lora)
    chosen = select(tree, filt, layers)
    transform = derive(intra=intra, stacked=stacked, conv2d_fft=conv2d_fft)
    if transform is not None:
        chosen = transform(chosen)
    rows = []
    for path, w in chosen:
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
    conv2d_norm: bool = True,
    inverse: bool = False,
    conv2d_fft: bool = False,
    intra: bool = False,
    sparsify: bool = True,
    stacked: bool = False,
) -> xr.DataArray:
    """The eigenvalue spectra :func:`analyze` fits, as a ``(layer, eval)`` DataArray.

    Rows and coordinates as in :func:`analyze` (with the same ``layers``, ``pool``,
    ``max_evals``, ``executor``); each row holds its spectrum in ascending order (raw units,
    pooled conv slices times ½, unpooled times ``rf/2``; none of it with
    ``conv2d_norm=False``), padded with NaN to the longest. Rows that
    :func:`analyze` cannot compute (``max_evals``, non-finite, all-zero) are all NaN; the
    ``warning`` coordinate says why. ``min_evals`` (default 0 here) only sets that label.

    With ``randomize=True`` the coordinates ``rand_evals`` (``(layer, eval)``: the spectrum of
    the row's randomized weights, the draw :func:`analyze` measures with the same ``key``) and
    ``max_rand_eval`` (its largest eigenvalue over the replicas) are added; rows with a warning
    have NaN there. ``conv2d_norm``, ``inverse``, ``conv2d_fft``, ``intra``, ``sparsify``,
    ``stacked``: the spectra of those analyses (:func:`analyze`).
    """
    _check_sizes_only(
        min_evals=min_evals, max_evals=max_evals, pool=pool, lora=lora, progress=progress
    )
    validate.flag(randomize, "randomize")
    validate.flag(conv2d_norm, "conv2d_norm")
    check_options(
        min_evals=min_evals,
        max_evals=max_evals,
        pool=pool,
        fit="PL",
        xmin_method="search",
        xmin_max=None,
        xmax=None,
        fix_fingers=None,
        randomize=randomize,
        mp_fit=False,
        detx=False,
        lora=lora,
        inverse=inverse,
        conv2d_fft=conv2d_fft,
        intra=intra,
        sparsify=sparsify,
        stacked=stacked,
    )
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
        conv2d_norm=conv2d_norm,
        inverse=inverse,
        derive=derive(
            intra=intra, sparsify=sparsify, stacked=stacked, conv2d_fft=conv2d_fft, key=key
        ),
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
            "conv_norm": CONV_NORM if conv2d_norm else 1.0,
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
    ``mp_softrank`` when present). With ``gof=True`` details, also the number of layers
    tested (``num_pl_tested``: finite ``pl_pvalue``) and of those that pass CSN's test
    (``num_pl_pass``: ``pl_pvalue > 0.1``, their tail is a plausible power law). Other dims
    (``model``, ``epoch``) are kept, so the summary
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
        out[name] = _drop_layer_coords(total / count.where(count > 0), dim)
    if "pl_pvalue" in details.data_vars:  # gof=True: how many layers pass CSN's test
        p = details["pl_pvalue"]
        out["num_pl_tested"] = _drop_layer_coords(p.notnull().sum(dim), dim)
        out["num_pl_pass"] = _drop_layer_coords((p > PL_P_THRESHOLD).sum(dim), dim)
    return xr.Dataset(out, attrs={"rmtkit_function": "summary", "dim": dim})


def _drop_layer_coords(da: xr.DataArray, dim: str) -> xr.DataArray:
    return da.drop_vars([c for c in da.coords if dim in da[c].dims], errors="ignore")
