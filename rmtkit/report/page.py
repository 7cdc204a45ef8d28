"""The HTML of a report: one self-contained page, its parts built from the analysis.

Every text that comes from the model (layer names, model names, attrs) is escaped; every
number is written from the Dataset (``NaN`` as an em dash, with the exact value kept in
``data-v`` for sorting). The page's style sheet and script (``report.css``, ``report.js``,
beside this module) are inlined, so the file needs no network and no server.
"""

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import NamedTuple

import numpy as np

from rmtkit import table_columns
from rmtkit.errors import FITTED_WARNINGS, SCALE_ONLY_WARNINGS, RowWarning
from rmtkit.report.figures import Drawn

__all__ = [
    "ModelView",
    "counts",
    "document",
    "is_fitted",
    "labels_of",
    "model_section",
    "series_section",
    "warning_class",
]

#: what a column means (the README's metric table, short); header tooltips
COLUMN_HELP = {
    "layer_id": "position of the layer in the model (execution order)",
    "name": "the layer's path in the model",
    "kind": "dense, conv1d, conv2d or embedding",
    "slice_id": "convolution kernel slice (pool=False)",
    "N": "rows of the oriented matrix (N >= M)",
    "M": "columns of the oriented matrix: the number of eigenvalues of a dense layer",
    "num_evals": "eigenvalues of the row's spectrum",
    "alpha": "power-law exponent of the ESD tail: 2 <= alpha <= 6 is well trained",
    "D": "Kolmogorov-Smirnov distance of the power-law fit (lower: better fit)",
    "num_pl_spikes": "eigenvalues in the fitted tail",
    "alpha_weighted": "alpha * log10(lambda_max): lower tracks better test accuracy",
    "log_spectral_norm": "log10 of the largest eigenvalue",
    "stable_rank": "sum of eigenvalues / largest: effective number of directions",
    "Lambda": "cut-off rate of the truncated power law",
    "num_fingers": "top eigenvalues dropped by fix_fingers",
    "sigma_mp": "width of the Marchenko-Pastur bulk (about 1 for noise)",
    "num_spikes": "eigenvalues beyond the Marchenko-Pastur bulk edge",
    "rand_distance": "Jensen-Shannon distance of the ESD to its randomized ESD (higher: "
    "further from random)",
    "num_traps": "correlation traps: randomized eigenvalues beyond the random bulk",
    "detX_num": "size of the detX (ERG) tail",
    "pl_pvalue": "goodness-of-fit p-value of the power law (below 0.1: not a power law)",
    "warning": "why a row is unusual (see 'layers by warning')",
}
#: columns whose values are integers
INT_COLUMNS = frozenset(
    {
        "layer_id",
        "slice_id",
        "N",
        "M",
        "rf",
        "num_evals",
        "num_pl_spikes",
        "num_fingers",
        "num_spikes",
        "num_traps",
        "detX_num",
        "matrix_rank",
        "rank_loss",
        "weak_rank_loss",
    }
)
#: how to read each summary mean (docs/math.md §4; README "better" column)
SUMMARY_READING = {
    "log_norm": "scale of the weights; lower is better across comparable models",
    "alpha": "HT-SR quality: 2 to 6 is well trained, lower within it is better; below 2 "
    "(over-trained) is WeightWatcher's early-stopping signal",
    "alpha_weighted": "alpha weighted by scale; lower tracks better test accuracy",
    "log_alpha_norm": "Schatten alpha-norm; lower is better",
    "log_spectral_norm": "scale of the largest eigenvalue; lower is better",
    "stable_rank": "effective number of directions; describes, does not score",
    "mp_softrank": "bulk edge / largest eigenvalue; near 1 looks random, lower is better",
}
#: CSS class of each group of warnings (colour in report.css)
_GROUPS = {
    "ok": "well trained by HT-SR (2 <= alpha <= 6)",
    "alpha": "fitted, alpha outside [2, 6]",
    "failed": "fitted, but alpha is not to be read (fit failed, or not a power law)",
    "scale": "not fitted: scale metrics only",
    "nodata": "no metrics: the weights could not be used",
    "other": "a label this version of rmtkit does not know",
}
_GOF_R = re.compile(r"^R_(\w+)$")
_RST_CODE = re.compile(r"``(.+?)``")


def esc(text) -> str:
    """HTML-escaped ``str(text)`` (quotes too: safe in attributes)."""
    return html.escape(str(text), quote=True)


def _member(label: str) -> RowWarning | None:
    try:
        return RowWarning.of(label)
    except ValueError:
        return None


def warning_class(label: str) -> str:
    """The colour group of a ``warning`` label (a key of :data:`_GROUPS`)."""
    member = _member(label)
    if member is None:
        return "other"
    if member is RowWarning.NONE:
        return "ok"
    if member in (RowWarning.OVER_TRAINED, RowWarning.UNDER_TRAINED):
        return "alpha"
    if member in FITTED_WARNINGS:  # fit-failed, and the goodness-of-fit labels
        return "failed"
    if member in SCALE_ONLY_WARNINGS:
        return "scale"
    return "nodata"


def is_fitted(label: str, alpha: float) -> bool:
    """Whether a row was fitted: its label is one of a fit's, or unknown with a finite alpha."""
    member = _member(label)
    if member is None:
        return math.isfinite(alpha)
    return member in FITTED_WARNINGS


def meaning(label: str) -> str:
    """What a warning label means (the docstring of its :class:`RowWarning`), as HTML."""
    member = _member(label)
    if member is None:
        return "A label this version of rmtkit does not know (made by a newer version?)."
    doc = " ".join((member.__doc__ or "").split())
    return _RST_CODE.sub(lambda m: f"<code>{esc(m.group(1))}</code>", esc(doc))


def _plain(label: str) -> str:
    """``meaning`` without markup, for a ``title`` attribute."""
    return re.sub(r"<[^>]+>", "", meaning(label)).replace("&lt;", "<").replace("&gt;", ">")


def fmt(value, column: str = "") -> str:
    """A number as the table writes it: integers whole, others to 4 significant digits, NaN
    (and a missing value) as an em dash."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if not math.isfinite(v):
        return "—" if math.isnan(v) else ("∞" if v > 0 else "−∞")
    if column in INT_COLUMNS and v == int(v):
        return str(int(v))
    return f"{v:.4g}"


def _sort_value(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return esc(value)
    return repr(v) if math.isfinite(v) else ""


def _column(details, name: str) -> np.ndarray:
    return np.asarray(details[name].values)


def _float(details, name: str, i: int) -> float:
    if name not in details.data_vars and name not in details.coords:
        return math.nan
    try:
        return float(np.asarray(details[name].values)[i])
    except (TypeError, ValueError):
        return math.nan


def labels_of(details) -> list[str]:
    n = details.sizes.get("layer", 0)
    if "warning" in details.data_vars or "warning" in details.coords:
        return [str(w) for w in _column(details, "warning")]
    return [""] * n


class ModelView(NamedTuple):
    """Everything the page shows of one model."""

    name: str
    details: object  # xarray.Dataset
    means: dict[str, float]
    figures: list[Drawn]
    panels: dict[int, list[Drawn]]  # row index -> its panels
    notes: dict[int, str]  # row index -> why it has no panels (or a caveat)
    notices: list[str]  # page-level notes: bad input, missing weights


# ---------------------------------------------------------------------------------------------
# Blocks.


def _figure(d: Drawn) -> str:
    if not d.svg:
        return f'<p class="note">{esc(d.caption)}: {esc(d.note)}.</p>'
    note = f'<p class="note">{esc(d.note)}</p>' if d.note else ""
    return (
        f'<figure class="plot" data-key="{esc(d.key)}">{d.svg}'
        f"<figcaption>{esc(d.caption)}</figcaption>{note}</figure>"
    )


def figures_block(drawn: Iterable[Drawn], css: str = "figs") -> str:
    return f'<div class="{css}">' + "".join(_figure(d) for d in drawn) + "</div>"


def counts_by_warning(details) -> list[tuple[str, int]]:
    """``(label, rows)`` for each label present, in :class:`RowWarning` order (a reason after
    ``": "`` is grouped under its label; unknown labels last)."""
    heads = [w.split(": ", 1)[0] for w in labels_of(details)]
    order = {m.value: i for i, m in enumerate(RowWarning)}
    counts: dict[str, int] = {}
    for h in heads:
        counts[h] = counts.get(h, 0) + 1
    return sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def _means_table(view: ModelView) -> str:
    rows = []
    for metric, value in view.means.items():
        title = "" if math.isfinite(value) else ' title="NaN on every layer"'
        rows.append(
            f'<tr><th scope="row">{esc(metric)}</th><td class="num"{title}>{fmt(value)}</td>'
            f"<td>{esc(SUMMARY_READING.get(metric, ''))}</td></tr>"
        )
    if not rows:
        return '<p class="note">No summary metric: the Dataset has none of its columns.</p>'
    return (
        '<table class="means"><caption>Summary: means over layers, NaN ignored '
        "(WeightWatcher's get_summary)</caption><thead><tr><th>metric</th><th>mean</th>"
        "<th>how to read it</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _warnings_table(details) -> str:
    counts = counts_by_warning(details)
    if not counts:
        return ""
    rows = "".join(
        f'<tr><td><span class="w w-{warning_class(label)}">{esc(label or "ok")}</span></td>'
        f'<td class="num">{n}</td><td>{meaning(label)}</td></tr>'
        for label, n in counts
    )
    return (
        '<table class="warnings"><caption>Layers by warning</caption><thead><tr>'
        "<th>warning</th><th>rows</th><th>what it means</th></tr></thead><tbody>"
        + rows
        + "</tbody></table>"
    )


def _warning_cell(label: str) -> str:
    """A ``warning`` cell: the label (``ok`` for none) coloured by group, its meaning as the
    tooltip."""
    group = warning_class(label)
    return (
        f'<td data-v="{esc(label)}"><span class="w w-{group}" title="{esc(_plain(label))}">'
        f"{esc(label or 'ok')}</span></td>"
    )


def _cell(details, column: str, i: int) -> str:
    if column == "warning":
        return _warning_cell(labels_of(details)[i])
    value = _column(details, column)[i]
    if column in ("name", "kind"):
        return f'<td data-v="{esc(value)}">{esc(value)}</td>'
    return f'<td class="num" data-v="{_sort_value(value)}">{fmt(value, column)}</td>'


def _all_values(details, i: int) -> str:
    names = [c for c in details.coords if details[c].dims == ("layer",)]
    names += [v for v in details.data_vars if details[v].dims == ("layer",) and v != "warning"]
    items = "".join(
        f"<div><dt>{esc(n)}</dt><dd>{fmt(_column(details, n)[i], n)}</dd></div>" for n in names
    )
    return f'<dl class="values">{items}</dl>'


def _gof_block(details, i: int) -> str:
    """Goodness-of-fit results of a row, from whatever such columns the analysis has:
    ``pl_pvalue`` (and ``pl_pvalue_se``), and ``R_<alternative>`` with ``p_<alternative>``."""
    parts = []
    p = _float(details, "pl_pvalue", i)
    if "pl_pvalue" in details.data_vars:
        se = _float(details, "pl_pvalue_se", i)
        se_text = f" ± {fmt(se)}" if math.isfinite(se) else ""
        verdict = ""
        if math.isfinite(p):
            verdict = (
                " — below 0.1: the tail is not a power law, so its alpha is doubtful"
                if p < 0.1
                else " — the power law is not rejected"
            )
        parts.append(f"<p>power-law p-value: <b>{fmt(p)}</b>{esc(se_text)}{esc(verdict)}</p>")
    alts = [m.group(1) for v in details.data_vars if (m := _GOF_R.match(str(v)))]
    rows = []
    for alt in alts:
        r, pa = _float(details, f"R_{alt}", i), _float(details, f"p_{alt}", i)
        if math.isfinite(r) and math.isfinite(pa) and pa < 0.1:
            reading = "power law favoured" if r > 0 else f"{alt} favoured"
        elif math.isfinite(r):
            reading = "no significant preference"
        else:
            reading = ""
        rows.append(
            f"<tr><td>{esc(alt)}</td><td class='num'>{fmt(r)}</td><td class='num'>{fmt(pa)}"
            f"</td><td>{esc(reading)}</td></tr>"
        )
    if rows:
        parts.append(
            "<table class='gof'><caption>Likelihood ratio tests: R &gt; 0 favours the power "
            "law, R &lt; 0 the alternative; significant when p &lt; 0.1</caption><thead><tr>"
            "<th>alternative</th><th>R</th><th>p</th><th>reading</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
    if not parts:
        return ""
    return '<div class="gofbox"><h4>Goodness of fit</h4>' + "".join(parts) + "</div>"


def _detail(view: ModelView, i: int, ncols: int) -> str:
    details = view.details
    note = view.notes.get(i, "")
    panels = view.panels.get(i, [])
    inner = f'<p class="note">{esc(note)}</p>' if note else ""
    if panels:
        inner += (
            '<div class="panels" data-lazy="1"></div><template>'
            + figures_block(panels, "figs layerfigs")
            + "</template>"
        )
    inner += _gof_block(details, i) + _all_values(details, i)
    return (
        f'<tr class="detail" hidden><td colspan="{ncols}"><div class="detailbox">{inner}'
        "</div></td></tr>"
    )


def layer_table(view: ModelView, table_id: str) -> str:
    """The sortable, filterable per-layer table; each row opens a detail row with the layer's
    figures, its goodness of fit (when computed) and all its values."""
    details = view.details
    n = details.sizes.get("layer", 0)
    have = set(details.data_vars) | set(details.coords)
    columns = table_columns(details)
    if "warning" not in columns:
        columns.append("warning")
    head = ['<th scope="col" class="toggle-col"><span class="sr">open</span></th>']
    for c in columns:
        kind = "text" if c in ("name", "kind", "warning") else "num"
        help_text = esc(COLUMN_HELP.get(c, c))
        head.append(
            f'<th scope="col" data-type="{kind}" aria-sort="none" title="{help_text}">'
            f'<button type="button" class="sort">{esc(c).replace("_", "_<wbr>")}</button></th>'
        )
    labels = labels_of(details)
    body = []
    for i in range(n):
        name = str(_column(details, "name")[i]) if "name" in have else str(i)
        kind = str(_column(details, "kind")[i]) if "kind" in have else ""
        label = labels[i]
        search = esc(" ".join((name, kind, label or "ok")).lower())
        cells = "".join(
            _cell(details, c, i) if c in have else _warning_cell(label) for c in columns
        )
        body.append(
            f'<tr class="row" data-search="{search}" data-group="{warning_class(label)}">'
            f'<td class="toggle-col"><button type="button" class="toggle" aria-expanded="false" '
            f'aria-label="open layer {esc(name)}">▸</button></td>{cells}</tr>'
            + _detail(view, i, len(columns) + 1)
        )
    controls = (
        f'<div class="controls" data-table="{table_id}"><label>filter <input type="search" '
        f'class="filter" placeholder="name, kind or warning"></label> <label>show '
        '<select class="group"><option value="">all rows</option>'
        '<option value="flagged">flagged (any warning)</option>'
        + "".join(f'<option value="{g}">{esc(_GROUPS[g])}</option>' for g in _GROUPS)
        + f'</select></label> <span class="shown" aria-live="polite">{n} of {n} rows</span>'
        "</div>"
    )
    return (
        controls
        + f'<div class="scroll"><table class="layers" id="{table_id}"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def _options(details) -> str:
    attrs = getattr(details, "attrs", {}) or {}
    if not attrs:
        return ""
    items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in attrs.items())
    return (
        '<details class="options"><summary>analysis options</summary>'
        f'<dl class="values">{items}</dl></details>'
    )


def counts(details) -> tuple[int, int, int, int]:
    """``(rows, fitted rows, rows with a finite alpha, rows with alpha in [2, 6])``."""
    labels = labels_of(details)
    n = len(labels)
    alpha = (
        np.asarray(details["alpha"].values, dtype=np.float64).reshape(-1)
        if "alpha" in details.data_vars
        else np.full(n, np.nan)
    )
    fitted = sum(is_fitted(lab, a) for lab, a in zip(labels, alpha, strict=True))
    finite = alpha[np.isfinite(alpha)]
    return n, fitted, finite.size, int(np.sum((finite >= 2.0) & (finite <= 6.0)))


def _counts_line(details) -> str:
    n, fitted, finite, band = counts(details)
    return (
        f"<p class='counts'><b>{n}</b> rows, <b>{fitted}</b> fitted, <b>{finite}</b> with a "
        f"finite alpha, <b>{band}</b> of them in [2, 6].</p>"
    )


def model_section(view: ModelView, index: int) -> str:
    """One model: notices, summary, warnings, figures and the layer table."""
    details = view.details
    notices = "".join(f'<p class="notice">{esc(t)}</p>' for t in view.notices)
    parts = [f'<section class="model" id="model-{index}"><h2>{esc(view.name)}</h2>', notices]
    if details.sizes.get("layer", 0):
        parts.append(_counts_line(details))
        parts.append(
            '<div class="summary">' + _means_table(view) + _warnings_table(details) + "</div>"
        )
        parts.append(figures_block(view.figures))
        parts.append("<h3>Layers</h3>")
        parts.append(
            '<p class="hint">Click a column header to sort, a row (or its ▸) to open the '
            "layer's figures and all its values.</p>"
        )
        parts.append(layer_table(view, f"layers-{index}"))
    parts.append(_options(details))
    parts.append("</section>")
    return "".join(parts)


def series_section(
    names: Sequence[str],
    means: Mapping[str, Mapping[str, float]],
    counts: Mapping[str, tuple[int, int, int, int]],
    figures: Sequence[Drawn],
    dim: str,
) -> str:
    """Several models: summaries side by side, a ranking by each summary metric, and the
    series figures."""
    metrics = list(dict.fromkeys(m for s in means.values() for m in s))
    head = "".join(f'<th scope="col">{esc(n)}</th>' for n in names)
    rows = []
    for label, k in (("rows", 0), ("fitted", 1), ("finite alpha", 2), ("alpha in [2, 6]", 3)):
        cells = "".join(f'<td class="num">{counts[n][k]}</td>' for n in names)
        rows.append(f'<tr><th scope="row">{esc(label)}</th>{cells}</tr>')
    for m in metrics:
        cells = "".join(f'<td class="num">{fmt(means[n].get(m, math.nan))}</td>' for n in names)
        rows.append(f'<tr><th scope="row">mean {esc(m)}</th>{cells}</tr>')
    side = (
        f'<div class="scroll"><table class="side"><caption>Summaries side by side (one column '
        f"per {esc(dim)}, in the order given)</caption><thead><tr><th></th>{head}</tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )
    rank_rows = []
    for m in metrics:
        ranked = sorted(
            names, key=lambda n: (not math.isfinite(means[n].get(m, math.nan)), means[n].get(m))
        )
        items = "".join(
            f"<li>{esc(n)} <span class='num'>({fmt(means[n].get(m, math.nan))})</span></li>"
            for n in ranked
        )
        rank_rows.append(
            f'<tr><th scope="row">{esc(m)}</th><td><ol class="rank">{items}</ol></td>'
            f"<td>{esc(SUMMARY_READING.get(m, ''))}</td></tr>"
        )
    ranking = (
        '<table class="ranking"><caption>Ranking by each summary metric, lowest first (NaN '
        "last)</caption><thead><tr><th>metric</th><th>models</th><th>how to read it</th></tr>"
        "</thead><tbody>" + "".join(rank_rows) + "</tbody></table>"
    )
    return (
        f'<section class="series" id="series"><h2>{len(names)} {esc(dim)}s compared</h2>'
        + side
        + ranking
        + figures_block(figures)
        + "</section>"
    )


def _asset(name: str) -> str:
    return resources.files("rmtkit.report").joinpath(name).read_text(encoding="utf-8")


def document(title: str, body: str, figure_css: str, intro: str) -> str:
    """The whole page: head with the inlined style sheets, ``body``, the inlined script."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="rmtkit">'
        f"<title>{esc(title)}</title><style>{_asset('report.css')}\n{figure_css}</style></head>"
        f"<body><header><h1>{esc(title)}</h1>{intro}"
        "<noscript><p class='notice nojs'>Sorting, filtering and the layer figures need "
        "JavaScript, which is off: the tables and model figures are shown as they are.</p>"
        "</noscript></header><main>"
        + body
        + "</main><footer><p>HT-SR reads a layer's quality from the eigenvalue spectrum (ESD) of "
        "its correlation matrix W<sup>T</sup>W: well-trained layers have heavy-tailed ESDs with "
        "a power-law exponent alpha in [2, 6]; below 2 hints at over-training, above 6 at a "
        "layer that is still almost random. Martin &amp; Mahoney, JMLR 22 (2021) and Nature "
        "Communications 12 (2021).</p></footer>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )
