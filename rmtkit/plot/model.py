"""Plots of a model, from the Datasets of :func:`rmtkit.analyze` (and its weights): the
correlation flow, the alpha histogram, and every layer's panels (see :mod:`rmtkit.plot`)."""

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator

import rmtkit
from rmtkit.errors import FITTED_WARNINGS, InvalidArgumentError
from rmtkit.plot.gof import plot_gof_bootstrap, plot_tail_models
from rmtkit.plot.layer import plot_layer
from rmtkit.plot.style import (
    _MARKERS,
    ALPHA_HIGH,
    ALPHA_LOW,
    _axes,
    _field,
    _pl_fit,
    layer_file_stem,
    save_figure,
)

__all__ = ["plot_alpha_hist", "plot_correlation_flow", "plot_layers", "plot_model"]


def _check_details(details, metric: str):
    import xarray as xr

    if not isinstance(details, xr.Dataset):
        raise InvalidArgumentError(
            f"`details` must be the xarray.Dataset of rmtkit.analyze, got "
            f"{type(details).__name__}; convert a DataFrame with xarray.Dataset.from_dataframe."
        )
    if "layer" not in details.dims:
        raise InvalidArgumentError(
            f"`details` must have a dim 'layer'; got dims {tuple(details.dims)}."
        )
    if metric not in details.data_vars:
        raise InvalidArgumentError(
            f"`details` has no variable {metric!r}; it has {sorted(details.data_vars)}."
        )


def _series(details, metric: str, over: Sequence[str] | None = None):
    """Yield ``(label, row_details)`` per entry of the dims of ``metric`` other than ``layer``.

    ``over`` restricts which dims are split into series; the remaining extra dims are stacked
    into the ``layer`` dim (pooled).
    """
    extra = [d for d in details[metric].dims if d != "layer"]
    split = extra if over is None else [d for d in extra if d in over]
    pooled = [d for d in extra if d not in split]
    for idx in itertools.product(*(range(details.sizes[d]) for d in split)):
        sub = details.isel(dict(zip(split, idx))) if split else details
        if pooled:
            sub = sub.stack(_pool=("layer", *pooled)).rename({"_pool": "layer"})
        parts = []
        for d, i in zip(split, idx):
            value = details[d].values[i] if d in details.coords else i
            parts.append(f"{value}" if d == "model" else f"{d} {value}")
        yield (", ".join(parts) or None), sub


def _layer_coord(sub, name: str, default):
    if name in sub.coords or name in sub.data_vars:
        values = np.asarray(sub[name].broadcast_like(sub["layer"]).values)
        return values.reshape(-1)
    return np.asarray(default)


def plot_correlation_flow(
    details,
    *,
    metric: str = "alpha",
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""The *correlation flow*: a layer metric (alpha) against ``layer_id``, marker by kind.

    Well-trained networks keep their layer alphas in the HT-SR band :math:`2 \le \alpha \le 6`
    (shaded) throughout the depth; a rising trend or layers above 6 show layers that learned
    little, below 2 over-fitted ones. One series (colour) per entry of every dim other than
    ``layer`` (``model``, ``epoch``, ...); with one series, colours mark the layer kinds.

    Parameters
    ----------
    details : xarray.Dataset
        :func:`rmtkit.analyze` output (dim ``layer``, coords ``layer_id``, ``kind``).
    metric : str, default "alpha"
        Any per-layer variable (e.g. "alpha_weighted", "log_spectral_norm").
    ax, title, savefig
        As in :func:`plot_esd` (default file name ``correlation_flow.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_details(details, metric)
    series = list(_series(details, metric))
    fig, ax = _axes(ax, figsize=(8.0, 4.8))
    many = len(series) > 10
    cmap = matplotlib.colormaps["viridis"]
    kinds_seen: dict[str, Any] = {}
    for k, (label, sub) in enumerate(series):
        y = np.asarray(sub[metric].values, dtype=np.float64).reshape(-1)
        x = _layer_coord(sub, "layer_id", np.arange(y.size)).astype(np.float64)
        kinds = _layer_coord(sub, "kind", np.full(y.size, "layer")).astype(str)
        keep = np.isfinite(y) & np.isfinite(x)
        order = np.argsort(x[keep], kind="stable")
        xs, ys, ks = x[keep][order], y[keep][order], kinds[keep][order]
        if len(series) == 1:
            color = None
        elif many:
            color = cmap(k / (len(series) - 1))
        else:
            color = f"C{k % 10}"
        ax.plot(
            xs,
            ys,
            "-",
            lw=0.8,
            color=color or "0.6",
            alpha=0.7,
            label=label if label and (not many or k in (0, len(series) - 1)) else None,
        )
        for kind in dict.fromkeys(ks):
            sel = ks == kind
            kcolor = color
            if color is None:
                kcolor = kinds_seen.setdefault(kind, f"C{len(kinds_seen) % 10}")
            ax.scatter(
                xs[sel],
                ys[sel],
                marker=_MARKERS.get(kind, "o"),
                s=28,
                color=kcolor,
                edgecolors="k",
                linewidths=0.3,
                zorder=3,
            )
            kinds_seen.setdefault(kind, kcolor)
    for kind in kinds_seen:  # legend entries for the kinds (marker; colour with one series)
        color = kinds_seen[kind] if len(series) == 1 else "0.5"
        ax.scatter(
            [],
            [],
            marker=_MARKERS.get(kind, "o"),
            color=color,
            edgecolors="k",
            linewidths=0.3,
            label=kind,
        )
    if metric == "alpha":
        ax.axhspan(ALPHA_LOW, ALPHA_HIGH, color="C2", alpha=0.08, zorder=0)
        ax.axhline(ALPHA_LOW, color="C3", ls="--", lw=1, label="α = 2 (over-trained below)")
        ax.axhline(ALPHA_HIGH, color="C1", ls="--", lw=1, label="α = 6 (under-trained above)")
    ax.set_xlabel("layer_id")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layer ids: no tick at 0.5
    ax.set_ylabel(metric)
    ax.set_title(f"Correlation flow: {metric} by layer" if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, savefig, "correlation_flow.png")


def plot_alpha_hist(
    details,
    *,
    metric: str = "alpha",
    bins: int | Sequence[float] | None = None,
    ax=None,
    title: str | None = None,
    savefig=None,
):
    r"""Histograms of the layer alphas, one per entry of a ``model`` dim, on shared bins.

    The way WeightWatcher compares models: the better-trained model has more of its layers in
    :math:`2 \le \alpha \le 6` (shaded) and a smaller mean alpha. Without a ``model`` dim there
    is one histogram; other extra dims (``epoch``) are pooled into it.

    Parameters
    ----------
    details : xarray.Dataset
        :func:`rmtkit.analyze` output, optionally concatenated along ``model``.
    metric : str, default "alpha"
        The per-layer variable to histogram.
    bins : int or edges, optional
        Default: ``numpy``'s "auto" rule on all values, at most 40 bins.
    ax, title, savefig
        As in :func:`plot_esd` (default file name ``alpha_hist.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_details(details, metric)
    series = [
        (label, np.asarray(sub[metric].values, dtype=np.float64).reshape(-1))
        for label, sub in _series(details, metric, over=("model",))
    ]
    series = [(label, v[np.isfinite(v)]) for label, v in series]
    everything = np.concatenate([v for _, v in series]) if series else np.zeros(0)
    fig, ax = _axes(ax)
    if everything.size:
        if bins is None:
            edges = np.histogram_bin_edges(everything, bins="auto")
            if edges.size > 41:
                edges = np.histogram_bin_edges(everything, bins=40)
        else:
            edges = np.histogram_bin_edges(everything, bins=bins)
        for k, (label, v) in enumerate(series):
            name = label or metric
            text = (
                f"{name} (mean {v.mean():.2f}, {v.size} layers)"
                if v.size
                else f"{name} (no finite values)"
            )
            ax.hist(
                v,
                bins=edges,
                color=f"C{k % 10}",
                alpha=0.45 if len(series) > 1 else 0.7,
                label=text,
            )
            ax.hist(v, bins=edges, color=f"C{k % 10}", histtype="step", lw=1.2)
    else:
        ax.text(0.5, 0.5, f"no finite {metric}", ha="center", transform=ax.transAxes)
    if metric == "alpha":
        ax.axvspan(ALPHA_LOW, ALPHA_HIGH, color="C2", alpha=0.08, zorder=0)
        ax.axvline(ALPHA_LOW, color="C3", ls="--", lw=1)
        ax.axvline(ALPHA_HIGH, color="C1", ls="--", lw=1)
    ax.set_xlabel(metric)
    ax.set_ylabel("number of layers")
    ax.set_title(f"Layer {metric} histogram" if title is None else title)
    ax.legend(loc="best", fontsize="small")
    name = "alpha_hist.png" if metric == "alpha" else f"{metric}_hist.png"
    return save_figure(fig, savefig, name)


def plot_model(
    details, savefig=None, *, weights=None, metric: str = "alpha", **layer_kw
) -> dict[str, Any]:
    """The model-level figures of an analysis, and optionally every layer's panels.

    Parameters
    ----------
    details : xarray.Dataset
        :func:`rmtkit.analyze` output (optionally with a ``model`` dim).
    savefig : folder, optional
        Writes ``correlation_flow.png`` and ``alpha_hist.png`` (and the layer files) into it.
    weights : model, path or collection, optional
        When given, also :func:`plot_layers` ``(weights, details, savefig=savefig,
        **layer_kw)``, under the key ``"layers"``.
    metric : str, default "alpha"
        Variable of the model-level figures.

    Returns
    -------
    dict
        ``{"correlation_flow": Figure, "alpha_hist": Figure[, "layers": ...]}``.
    """
    folder = None
    if savefig is not None:
        folder = Path(savefig)
        folder.mkdir(parents=True, exist_ok=True)
    hist_name = "alpha_hist.png" if metric == "alpha" else f"{metric}_hist.png"
    out: dict[str, Any] = {
        "correlation_flow": plot_correlation_flow(
            details,
            metric=metric,
            savefig=None if folder is None else folder / "correlation_flow.png",
        ),
        "alpha_hist": plot_alpha_hist(
            details, metric=metric, savefig=None if folder is None else folder / hist_name
        ),
    }
    if weights is not None:
        out["layers"] = plot_layers(weights, details, savefig=savefig, **layer_kw)
    return out


def _rows(details) -> Iterable[tuple[str, int | None, int | None, Any]]:
    """``(name, layer_id, slice_id, row)`` for each entry of the ``layer`` dim."""
    extra = (
        [d for d in details.dims if d != "layer" and d in details["alpha"].dims]
        if "alpha" in details.data_vars
        else []
    )
    if extra:
        raise InvalidArgumentError(
            f"`details` for plot_layers must describe one model (dim 'layer' only); it also "
            f"has {extra}: select one entry first, e.g. details.isel({extra[0]}=0)."
        )
    if "name" not in details.coords and "name" not in details.data_vars:
        raise InvalidArgumentError("`details` has no `name` coordinate to match layers by.")
    names = np.asarray(details["name"].values).astype(str)
    ids = details["layer_id"].values if "layer_id" in details.coords else [None] * names.size
    slices = details["slice_id"].values if "slice_id" in details.coords else [None] * names.size
    for i, name in enumerate(names):
        sid = slices[i]
        sid = (
            None
            if sid is None or (isinstance(sid, float) and np.isnan(sid)) or int(sid) < 0
            else int(sid)
        )
        lid = None if ids[i] is None else int(ids[i])
        yield str(name), lid, sid, details.isel(layer=i)


def _has(row, name: str) -> bool:
    return row is not None and name in row.data_vars


def plot_layers(
    weights,
    details=None,
    *,
    savefig=None,
    layers: Sequence[str] | None = None,
    min_evals: int = 50,
    pool: bool | None = None,
    randomize: bool | None = None,
    mp_fit: bool | None = None,
    gof: bool | None = None,
    n_boot: int | None = None,
    key=None,
    bins: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The per-layer panels (:func:`plot_layer`) of every analyzed layer of a model.

    Spectra are computed by :func:`rmtkit.spectra` (with ``randomize``, its randomized spectra
    too), pooled as in docs/math.md §1: one pooled ESD per convolution layer (``pool=True``), or
    one per kernel slice (``pool=False``, files get ``_slice<k>``). With ``details`` the layers
    (and slices) are its fitted rows (``warning`` "", "over-trained", "under-trained" or
    "fit-failed"; rows with too few eigenvalues or bad weights are skipped) and their fits are
    its values (alpha, xmin, D, tail size, max_rand_eval), so the plots show what the table
    says; a row whose ``lambda_max`` does not match the spectrum computed here (another
    normalisation) is refitted with :func:`rmtkit.fit_pl`.

    Parameters
    ----------
    weights : model object, path or collection
        Anything :func:`rmtkit.load` reads.
    details : xarray.Dataset, optional
        :func:`rmtkit.analyze` output of the same model (one model: dim ``layer``).
        Default: every layer with at least ``min_evals`` eigenvalues, fitted here.
    savefig : folder, optional
        Write the PNGs there (names in the module docstring) and return their paths instead
        of the figures, so a large model does not hold hundreds of figures in memory.
    layers : sequence of str, optional
        Only these layer names.
    min_evals : int, default 50
        Without ``details``: skip spectra with fewer eigenvalues.
    pool : bool, optional
        Default: False when ``details`` has a ``slice_id`` coordinate, else True.
    randomize, mp_fit : bool, optional
        Draw the randomized / MP panels. Default: as analyzed (``details`` has
        ``max_rand_eval`` / ``sigma_mp``); without ``details``, False.
    gof : bool, optional
        Draw the goodness-of-fit panels (docs/math.md §12) of every tested row: the bootstrap
        distribution of the KS distance with the observed one
        (:func:`rmtkit.plot_gof_bootstrap`, ``gof_bootstrap``) and the tail's CCDF with the
        fitted alternatives (:func:`rmtkit.plot_tail_models`, ``gof_tail``), computed by
        :func:`rmtkit.layer_gof` with the analysis's options and ``key``, so the p-value
        drawn is the row's ``pl_pvalue``, replicate for replicate. Rows with a NaN
        ``pl_pvalue`` (``"short-tail"``, ``"fit-failed"``) get none. Default: as analyzed
        (``details`` has ``pl_pvalue``); without ``details``, False (True: every drawn layer).
    n_boot : int, optional
        Bootstrap replicates of the ``gof`` panels. Default: the analysis's
        (``details.attrs["n_boot"]``), else 2500.
    key : jax.random key or int, optional
        The key of :func:`rmtkit.analyze` (default ``jax.random.key(0)``): with the same
        key, the randomized ESD drawn is the one the analysis measured (its first replica)
        and the bootstrap drawn is the analysis's.
    bins : int, optional
        Bins of the histograms.

    Returns
    -------
    dict
        File stem (:func:`layer_file_stem`) -> {panel: Figure}, or {panel: Path} with
        ``savefig``.
    """
    spectra = rmtkit.spectra(
        weights,
        pool=_pool(details, pool),
        randomize=bool(_default(details, randomize, "max_rand_eval")),
        key=key,
        **_spectrum_options(details),
    )
    detx = _default(details, None, "detX_val")
    spacing = _default(details, None, "mean_spacing_ratio")
    vectors = _default(details, None, "bulk_mean_loc_ratio")
    matrices = dict(rmtkit.iter_layers(rmtkit.load(weights))) if vectors else {}
    mp_fit = bool(_default(details, mp_fit, "sigma_mp"))
    gof_kw = _gof_options(details, n_boot) if _default(details, gof, "pl_pvalue") else None
    by_row = {
        (str(name), _slice(sid, rf)): i
        for i, (name, sid, rf) in enumerate(
            zip(
                spectra["name"].values,
                _coord(spectra, "slice_id"),
                spectra["rf"].values,
                strict=True,
            )
        )
    }
    if details is not None:
        rows = list(_rows(details))
        missing = sorted({name for name, *_ in rows} - {name for name, _ in by_row})
        if missing:
            raise InvalidArgumentError(
                f"layers {missing[:5]} of `details` are not in the weights (layers there: "
                f"{list(dict.fromkeys(n for n, _ in by_row))[:5]}...); plot the model that was "
                "analyzed."
            )
    else:
        rows = [
            (name, int(spectra["layer_id"].values[i]), sid, None)
            for (name, sid), i in by_row.items()
        ]
    if layers is not None:
        wanted = set(layers)
        rows = [r for r in rows if r[0] in wanted]

    folder = None if savefig is None else Path(savefig)
    out: dict[str, dict[str, Any]] = {}
    for name, lid, sid, row in rows:
        i = by_row[(name, sid)]
        evals = _finite(spectra.values[i])
        if evals.size == 0 or (row is None and evals.size < min_evals):
            continue
        warning = str(row["warning"].values) if _has(row, "warning") else ""
        if warning not in FITTED_WARNINGS:
            continue  # a row the analysis did not fit (too few eigenvalues, bad weights, ...)
        fit = None
        if row is not None:
            lam = _field(row, "lambda_max")
            top = float(np.max(evals))
            if not np.isfinite(lam) or abs(lam - top) <= 1e-3 * max(abs(top), 1e-30):
                fit = row  # the table's own fit (NaN alpha: drawn as a failed fit)
        if fit is None:
            fit = _pl_fit(evals, None)
        n_rows, n_cols = int(spectra["N"].values[i]), int(spectra["M"].values[i])
        q = n_rows / n_cols
        mfit = rmtkit.mp_fit(evals, Q=q, M=n_cols) if mp_fit else None
        revals, max_rand = None, None
        if "rand_evals" in spectra.coords:
            revals = _finite(spectra["rand_evals"].values[i])
            revals = revals if revals.size else None
            max_rand = _field(row, "max_rand_eval")
        figs = plot_layer(
            evals,
            fit,
            rand_evals=revals,
            max_rand_eval=max_rand,
            Q=q if mp_fit else None,
            mp_fit=mfit,
            M=n_cols,
            name=name,
            layer_id=lid,
            slice_id=sid,
            bins=bins,
            savefig=folder,
            detx=row if detx and _has(row, "detX_val") else None,
            spacing=bool(spacing),
            vectors=_vectors(matrices.get(name), sid, details) if vectors else None,
        )
        stem = layer_file_stem(name, lid, sid)
        if gof_kw is not None and (row is None or np.isfinite(_field(row, "pl_pvalue"))):
            figs.update(_gof_panels(evals, lid, sid, gof_kw, key, folder, stem))
        if folder is not None:
            out[stem] = {panel: folder / f"{stem}_{panel}.png" for panel in figs}
        else:
            out[stem] = figs
    return out


def _gof_options(details, n_boot: int | None) -> dict[str, Any]:
    """The options of the goodness-of-fit panels: those of the analysis (``details.attrs``:
    ``n_boot``, ``xmin_method``, ``xmin_max``), ``n_boot`` when given, else the defaults."""
    attrs = {} if details is None else details.attrs
    if n_boot is None:
        recorded = attrs.get("n_boot")
        n_boot = int(recorded) if isinstance(recorded, (int, np.integer)) else 2500
    xmin_max = attrs.get("xmin_max")
    return dict(
        n_boot=n_boot,
        xmin_method=str(attrs.get("xmin_method", "search")),
        xmin_max=None if xmin_max is None or xmin_max == "None" else float(xmin_max),
    )


def _gof_panels(evals, layer_id, slice_id, gof_kw: dict, key, folder, stem) -> dict[str, Any]:
    """The two goodness-of-fit figures of one row (:func:`rmtkit.layer_gof`), saved as
    ``<stem>_gof_bootstrap.png`` and ``<stem>_gof_tail.png`` in ``folder`` (if any)."""
    pvalue, comparison = rmtkit.layer_gof(
        evals,
        layer_id=-1 if layer_id is None else layer_id,
        slice_id=0 if slice_id is None else slice_id,
        key=key,
        **gof_kw,
    )
    path = None if folder is None else folder / f"{stem}_gof_bootstrap.png"
    boot = plot_gof_bootstrap(pvalue, savefig=path)
    path = None if folder is None else folder / f"{stem}_gof_tail.png"
    tail = plot_tail_models(evals, comparison, savefig=path)
    return {"gof_bootstrap": boot, "gof_tail": tail}


def _spectrum_options(details) -> dict:
    """The options of :func:`rmtkit.spectra` that reproduce the spectra of an analysis, read
    from its attrs (``conv2d_norm``, ``inverse``, ``conv2d_fft``, ``intra``, ``stacked``)."""
    if details is None:
        return {}
    attrs = details.attrs
    out = {name: True for name in ("inverse", "conv2d_fft", "intra", "stacked") if _on(attrs, name)}
    if "intra" in out:
        out["sparsify"] = _on(attrs, "sparsify")
    if float(attrs.get("conv_norm", 0.5)) == 1.0:
        out["conv2d_norm"] = False
    return out


def _on(attrs, name: str) -> bool:
    """An attrs flag (a bool, or its netCDF string ``"True"``)."""
    return str(attrs.get(name, "False")) == "True"


def _vectors(w, slice_id, details):
    """The eigenvector metrics of a layer (or of one kernel slice) in the units of its row
    (:func:`rmtkit.eigenvector_metrics`), or None."""
    if w is None:
        return None
    a = np.asarray(w.values, dtype=np.float64)
    norm = float(details.attrs.get("conv_norm", 0.5)) if details is not None else 0.5
    if a.ndim == 2:
        return rmtkit.eigenvector_metrics(a)
    if slice_id is None:
        return rmtkit.eigenvector_metrics(a, scale=norm)
    rf = int(np.prod(a.shape[2:]))
    s = np.asarray(rmtkit.slices(a))[slice_id]
    return rmtkit.eigenvector_metrics(s, scale=rf * norm if norm != 1.0 else 1.0)


def _finite(values: np.ndarray) -> np.ndarray:
    """The finite entries of a NaN-padded spectrum row."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _coord(da, name: str) -> list:
    """The values of coordinate ``name`` of ``da`` (None per row where there is none)."""
    return list(da[name].values) if name in da.coords else [None] * da.sizes["layer"]


def _slice(slice_id, rf) -> int | None:
    """A spectra row's slice: None for pooled rows and dense layers (no ``_slice<k>``)."""
    return None if slice_id is None or int(rf) == 1 else int(slice_id)


def _pool(details, pool: bool | None) -> bool:
    """``pool`` as given, else as analysed: False when ``details`` has ``slice_id``."""
    if pool is not None:
        return pool
    return not (details is not None and "slice_id" in details.coords)


def _default(details, value: bool | None, variable: str) -> bool:
    """An optional panel's switch: ``value`` as given, else whether the analysis computed
    ``variable`` (False without ``details``)."""
    if value is not None:
        return value
    first = None if details is None else next(iter(_rows(details)), (None,) * 4)[3]
    return _has(first, variable)
