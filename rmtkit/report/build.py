""":func:`report`: the analysis of one model or a series of models as one HTML page."""

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import rmtkit
from rmtkit.core import validate
from rmtkit.errors import InvalidArgumentError
from rmtkit.report import figures, page
from rmtkit.report.inputs import SPECTRA_OPTIONS, ModelInput, gather

__all__ = [
    "SIZE_BUDGET_BASE",
    "SIZE_BUDGET_PER_LAYER",
    "SIZE_BUDGET_PER_ROW",
    "report",
    "size_budget",
]

#: size budget of a report (bytes): a fixed part (style sheet, script, summary, model figures),
SIZE_BUDGET_BASE = 100_000
#: plus this much per row of a layer table (the row and all its values),
SIZE_BUDGET_PER_ROW = 4_000
#: plus this much per layer drawn with all four panels (ESD, D(xmin), randomized, MP); 50
#: layers, all drawn: 100 kB + 50 x 40 kB = 2.1 MB
SIZE_BUDGET_PER_LAYER = 36_000


def size_budget(rows: int, drawn: int) -> int:
    """The size (bytes) a report of ``rows`` table rows, ``drawn`` of them with their four
    panels, stays under (checked by the tests, measured by ``benchmarks/report.py``)."""
    return SIZE_BUDGET_BASE + SIZE_BUDGET_PER_ROW * rows + SIZE_BUDGET_PER_LAYER * drawn


def report(
    details_or_models: Any,
    path: str | os.PathLike,
    *,
    weights: Any = None,
    key: Any = None,
    title: str | None = None,
    layer_figures: bool = True,
    progress: bool | str = True,
    **analyze_kwargs: Any,
) -> Path:
    r"""Write the HT-SR analysis of a model, or of a series of models, as one HTML file.

    The page is self-contained: its figures are inline SVG (drawn by :mod:`rmtkit.plot`), its
    style sheet and its small script are inline, and it loads nothing from the network, so it
    opens from an e-mail attachment. It holds, per model:

    - the summary (the :func:`rmtkit.summary` means, how to read each), the number of layers
      per ``warning`` label and what each label means (:class:`rmtkit.RowWarning`);
    - the correlation flow (alpha by layer, by kind, the [2, 6] band) and the alpha histogram;
    - the per-layer table, sortable (click a header) and filterable (text, warning group),
      warnings coloured and explained; a row opens the layer's figures: the log-log ESD with
      the table's power-law fit, D(xmin) over the candidate xmin, and when the analysis
      computed them the randomized ESD (``randomize=True``) and the Marchenko-Pastur fit
      (``mp_fit=True``); its goodness of fit when the analysis has such columns
      (``pl_pvalue``, ``R_<alternative>`` / ``p_<alternative>``); all its values.

    For several models (a series: checkpoints of one run, or models to compare) it adds their
    summaries side by side, a ranking of the models by each summary metric, every model's layer
    alphas on one correlation-flow plot, their alpha histograms, and each summary metric along
    the series, in the order given.

    Bad input still gives a page that says why: an empty Dataset, a model whose every layer
    failed (no finite alpha), columns that are NaN on every layer.

    Size: the figures are compacted SVG (:mod:`rmtkit.report.svg`), about 15 kB per layer
    with two panels and 30 kB with four (``randomize`` and ``mp_fit``). The budget, checked by
    the tests (:func:`size_budget`), is 100 kB + 4 kB per table row + 36 kB per layer drawn
    with four panels: 2.1 MB for 50 layers. Layer figures are parsed but not drawn until their
    row is opened, so the page renders at once.

    Parameters
    ----------
    details_or_models
        What to report (:mod:`rmtkit.report.inputs`): an :func:`rmtkit.analyze` Dataset (one
        model; with one more dim such as ``model`` or ``epoch``, a series), a netCDF file of
        one (``.nc``), a model (anything :func:`rmtkit.analyze` reads: analyzed here), or a
        mapping ``{name: Dataset or model}`` / a list of them (a series, in that order).
    path : str or path
        The HTML file to write (its folder must exist). Written whole or not at all.
    weights : model, or mapping {name: model}, optional
        For Datasets: the weights that were analyzed, from which the layer figures' spectra
        are computed (:func:`rmtkit.spectra`); without them the page has no layer figures.
        For an analysis with ``base=`` give ``base`` too (below). Models given directly are
        their own weights.
    key : jax.random key or int, optional
        The randomization key of the analysis (default that of :func:`rmtkit.analyze`), so the
        randomized ESD drawn is the one the analysis measured.
    title : str, optional
        Default ``"rmtkit report: <model>"``.
    layer_figures : bool, default True
        Draw the per-layer figures (the slow part: about half a second per layer).
    progress : bool or "always", default True
        Progress bars on stderr (when it is a terminal; ``"always"``: in any case) for the
        analysis, the spectra and the figure rendering.
    **analyze_kwargs
        Options of :func:`rmtkit.analyze` for models analyzed here (``randomize=True``,
        ``mp_fit=True``, ``layers=``, ...). With Datasets only ``base``, ``lora`` and
        ``executor`` are accepted: they say how to compute the spectra of ``weights``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidArgumentError
        A bad option, a folder that does not exist, a Dataset that is not a per-layer
        analysis (e.g. a summary), analysis options given with Datasets.

    Examples
    --------
    >>> rmtkit.report(rmtkit.data_path(), "report.html", randomize=True)  # doctest: +SKIP
    >>> rmtkit.report({"epoch 1": "ckpt1.pt", "epoch 5": "ckpt5.pt"}, "run.html")  # doctest: +SKIP
    """
    target = _check_path(path)
    validate.flag(layer_figures, "layer_figures")
    if not (validate.is_bool(progress) or progress == "always"):
        raise InvalidArgumentError(f"`progress` must be True, False or 'always'; got {progress!r}.")
    if title is not None and not isinstance(title, str):
        raise InvalidArgumentError(f"`title` must be a str; got {type(title).__name__}.")
    models, dim = gather(
        details_or_models,
        weights=weights,
        key=key,
        progress=progress,
        analyze_kwargs=analyze_kwargs,
    )
    spectra_kwargs = {k: v for k, v in analyze_kwargs.items() if k in SPECTRA_OPTIONS}
    plans = [_plan(m, layer_figures) for m in models]
    steps = len(models) + sum(len(rows) for rows in plans) + (len(models) > 1)
    bar = rmtkit.Progress(steps, progress, "report", unit="figure sets")
    render = figures.Renderer()
    views = [
        _model_view(
            m,
            rows,
            render,
            bar,
            key=key,
            progress=progress,
            spectra_kwargs=spectra_kwargs,
            layer_figures=layer_figures,
        )
        for m, rows in zip(models, plans, strict=True)
    ]
    series = _series(views, render, dim) if len(views) > 1 else ""
    if len(views) > 1:
        bar.step(f"{len(views)} {dim}s")
    bar.close()
    heading = title or (
        f"rmtkit report: {views[0].name}"
        if len(views) == 1
        else f"rmtkit report: {len(views)} {dim}s"
    )
    body = series + "".join(page.model_section(v, i) for i, v in enumerate(views))
    html = page.document(heading, body, render.styles.css(), _intro(views, dim))
    _write(target, html)
    return target


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"`path` must be a file path; got {type(path).__name__}.")
    target = Path(path)
    if target.is_dir():
        raise InvalidArgumentError(f"{path}: is a folder; give the HTML file to write.")
    if not target.parent.is_dir():
        raise InvalidArgumentError(f"{path}: folder {str(target.parent)!r} does not exist.")
    return target


def _write(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically: a new temporary file in the same folder
    (created as ``open`` creates files, so with the usual permissions), then renamed."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rows(details) -> int:
    return details.sizes.get("layer", 0) if "layer" in details.dims else 0


def _alpha(details) -> np.ndarray:
    if "alpha" not in details.data_vars:
        return np.full(_rows(details), np.nan)
    return np.asarray(details["alpha"].values, dtype=np.float64).reshape(-1)


def _plan(model: ModelInput, layer_figures: bool) -> list[int]:
    """The rows of ``model`` whose figures will be drawn: its fitted rows, given weights."""
    if not layer_figures or model.weights is None or _rows(model.details) == 0:
        return []
    labels = page.labels_of(model.details)
    alpha = _alpha(model.details)
    return [
        i for i, (lab, a) in enumerate(zip(labels, alpha, strict=True)) if page.is_fitted(lab, a)
    ]


def _notices(model: ModelInput, layer_figures: bool) -> list[str]:
    """What the page must say about ``model`` before its numbers (bad or partial input)."""
    details = model.details
    n = _rows(details)
    if n == 0:
        why = (
            "this Dataset is empty (no variables)"
            if not details.data_vars
            else "the analysis has no rows"
        )
        return [
            f"Nothing to show: {why}. The model had no layer rmtkit can analyze, or the "
            "layers= filter selected none."
        ]
    out = []
    alpha = _alpha(details)
    if not np.isfinite(alpha).any():
        what = (
            "The analysis has no alpha column"
            if "alpha" not in details.data_vars
            else "No layer has a finite alpha"
        )
        out.append(
            f"{what}: every layer was skipped or its fit failed, so there is no correlation "
            "flow, histogram or mean alpha. The warning of each row says why (see 'Layers by "
            "warning')."
        )
    empty = [
        v
        for v in details.data_vars
        if details[v].dims == ("layer",)
        and details[v].dtype.kind == "f"
        and not np.isfinite(np.asarray(details[v].values)).any()
    ]
    if empty and len(empty) < len(details.data_vars):
        out.append(
            f"Columns with no value on any layer (NaN everywhere, shown as —): {', '.join(empty)}."
        )
    if layer_figures and model.weights is None and np.isfinite(alpha).any():
        out.append(
            "No per-layer figures: they need the weights that were analyzed (pass weights= to "
            "rmtkit.report, or give it the model instead of its Dataset)."
        )
    return out


def _means(details) -> dict[str, float]:
    if _rows(details) == 0:
        return {}
    return {k: float(v) for k, v in rmtkit.summary(details).data_vars.items()}


def _model_view(
    model: ModelInput,
    rows: list[int],
    render: figures.Renderer,
    bar,
    *,
    key,
    progress,
    spectra_kwargs: Mapping[str, Any],
    layer_figures: bool,
) -> page.ModelView:
    """What the page shows of ``model``: its notices, means, model figures and the panels of
    its ``rows`` (one progress step for the model figures, one per layer)."""
    details = model.details
    n = _rows(details)
    notices = _notices(model, layer_figures)
    figs = figures.model_figures(details, render) if n else []
    bar.step(f"{model.name}: model figures")
    panels: dict[int, list[figures.Drawn]] = {}
    notes: dict[int, str] = {}
    labels = page.labels_of(details) if n else []
    for i, label in enumerate(labels):
        if not page.is_fitted(label, _alpha(details)[i]):
            notes[i] = f"Not fitted ({label or 'no label'}): no figures for this row."
    if rows:
        spectra = _spectra(model, rows, key=key, progress=progress, spectra_kwargs=spectra_kwargs)
        index = figures.spectra_index(spectra)
        has_rand = "rand_evals" in spectra.coords
        mp = "sigma_mp" in details.data_vars
        for i in rows:
            k = figures.row_key(details, i)
            j = index.get(k)
            if j is None:
                notes[i] = "No spectrum of this layer in the weights given: no figures."
            else:
                panels[i] = figures.layer_panels(
                    spectra.values[j],
                    details.isel(layer=i),
                    render,
                    rand_evals=spectra["rand_evals"].values[j] if has_rand else None,
                    mp=mp,
                )
            bar.step(f"{model.name}: {k[0]}")
    return page.ModelView(model.name, details, _means(details), figs, panels, notes, notices)


def _spectra(model: ModelInput, rows: list[int], *, key, progress, spectra_kwargs):
    """The spectra of the layers of ``rows`` (randomized too when the analysis randomized)."""
    details = model.details
    ids = None
    if "layer_id" in details.coords:
        ids = sorted({int(x) for x in np.asarray(details["layer_id"].values)[rows]})
    return rmtkit.spectra(
        model.weights,
        layers=ids,
        pool="slice_id" not in details.coords,
        randomize="max_rand_eval" in details.data_vars,
        key=key,
        progress=progress,
        **spectra_kwargs,
    )


def _series(views: list[page.ModelView], render: figures.Renderer, dim: str) -> str:
    names = [v.name for v in views]
    means = {v.name: v.means for v in views}
    counts = {v.name: page.counts(v.details) for v in views}
    plottable = {
        v.name: v.details for v in views if _rows(v.details) and "alpha" in v.details.data_vars
    }
    figs = []
    if plottable:
        stacked = rmtkit.concat(plottable, dim="model")
        figs = figures.series_figures(stacked, means, render, dim=dim)
    return page.series_section(names, means, counts, figs, dim)


def _intro(views: list[page.ModelView], dim: str) -> str:
    version = rmtkit.__version__
    if len(views) == 1:
        what = "one model"
    else:
        links = ", ".join(
            f'<a href="#model-{i}">{page.esc(v.name)}</a>' for i, v in enumerate(views)
        )
        what = f"{len(views)} {page.esc(dim)}s: {links}"
    rows = sum(_rows(v.details) for v in views)
    drawn = sum(len(p) for v in views for p in v.panels.values())
    return (
        f'<p class="intro">Heavy-Tailed Self-Regularization analysis of {what}, from the '
        f"weights alone: {rows} layer rows, {drawn} layer figures. Made by rmtkit "
        f"{page.esc(version)}; one self-contained file.</p>"
    )
