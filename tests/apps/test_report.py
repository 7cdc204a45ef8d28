"""rmtkit.report on the Python side: what the page holds (numbers from the analysis, figures per
fitted layer, warnings explained), that it is self-contained, its SVG compaction, bad input, the
command line. The page in a real browser: tests/apps/test_report_browser.py."""

import collections
import html
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
import xarray as xr
from _deps import require

require("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

import rmtkit  # noqa: E402
from rmtkit.cli import main  # noqa: E402
from rmtkit.collection import from_layers  # noqa: E402
from rmtkit.errors import InvalidArgumentError, RowWarning  # noqa: E402
from rmtkit.report import page, svg  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Reading a page back.


class Page(HTMLParser):
    """The parts of a report the tests read: layer rows (their cells' ``data-v``), the
    figures of each detail row, ids, references, classes, external resources."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.text = text
        self.rows: list[dict] = []  # per tr.row: {"search", "group", "cells": [data-v]}
        self.details: list[list[str]] = []  # per tr.detail: figure keys inside it
        self.headers: dict[str, list[str]] = collections.defaultdict(list)  # table id -> cols
        self.ids: list[str] = []
        self.refs: list[str] = []
        self.classes: set[str] = set()
        self.external: list[str] = []
        self.notices: list[str] = []
        self.model_figures: list[str] = []
        self._table = None
        self._in_detail = False
        self._in_notice = False
        self._in_th_button = False
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        for name, value in attrs:
            if value is None:
                continue
            if name == "href" and value.startswith("#"):
                self.refs.append(value[1:])
            elif name in ("src", "href", "action", "poster") or "url(" in value:
                if not value.startswith("#") and "url(#" not in value:
                    self.external.append(f"{tag} {name}={value}")
        if tag in ("link", "iframe", "img", "object", "embed"):
            self.external.append(tag)
        self.refs += re.findall(r"url\(#([^)]+)\)", " ".join(v or "" for _, v in attrs))
        self.classes.update((a.get("class") or "").split())
        if tag == "table" and "layers" in (a.get("class") or ""):
            self._table = a["id"]
        elif tag == "button" and a.get("class") == "sort":
            self._in_th_button = True
        elif tag == "tr" and a.get("class") == "row":
            self.rows.append({"search": a["data-search"], "group": a["data-group"], "cells": []})
        elif tag == "td" and self.rows and not self._in_detail and "data-v" in a:
            self.rows[-1]["cells"].append(a["data-v"])
        elif tag == "tr" and a.get("class") == "detail":
            self._in_detail = True
            self.details.append([])
        elif tag == "figure" and "data-key" in a:
            if self._in_detail:
                self.details[-1].append(a["data-key"])
            else:
                self.model_figures.append(a["data-key"])
        elif tag == "p" and (a.get("class") or "") == "notice":
            self._in_notice = True
            self.notices.append("")

    def handle_endtag(self, tag):
        if tag == "tr" and self._in_detail:
            self._in_detail = False
        elif tag == "p":
            self._in_notice = False
        elif tag == "button":
            self._in_th_button = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in_notice:
            self.notices[-1] += data
        if self._in_th_button and self._table:
            self.headers[self._table].append(data)


def columns(p: Page, table="layers-0") -> list[str]:
    """Header names (``_<wbr>`` splits them into several data chunks)."""
    return "|".join(p.headers[table]).replace("_|", "_").split("|")


def heavy_tailed(n_rows, n_cols, seed):
    """Student-t entries with a few strong columns: a fitted, heavy-tailed spectrum."""
    rng = np.random.default_rng(seed)
    w = rng.standard_t(3.0, size=(n_rows, n_cols))
    w[:, :4] *= 6.0
    return w


def synthetic_collection():
    """Four dense layers: heavy-tailed, Gaussian, too small to fit, NaN weights."""
    rng = np.random.default_rng(7)
    return from_layers(
        {
            "block0/heavy": heavy_tailed(256, 128, 0),
            "block1/gauss": rng.standard_normal((192, 128)),
            "block2/small": rng.standard_normal((16, 8)),
            "block3/broken": np.full((64, 64), np.nan),
        }
    )


def hand_built(alphas, **extra):
    """A Dataset with the analysis' schema (a few variables), no weights behind it."""
    alphas = np.asarray(alphas, dtype=np.float64)
    n = alphas.size
    data = {
        "alpha": ("layer", alphas),
        "D": ("layer", np.full(n, 0.05)),
        "alpha_weighted": ("layer", alphas * 1.5),
        "log_spectral_norm": ("layer", np.linspace(0.5, 1.5, n)),
        "warning": ("layer", np.array([str(rmtkit.alpha_warning(a)) for a in alphas])),
    }
    data.update({k: ("layer", np.asarray(v)) for k, v in extra.items()})
    coords = {
        "name": ("layer", np.array([f"fc{i}" for i in range(n)])),
        "kind": ("layer", np.array(["dense"] * n)),
        "layer_id": ("layer", np.arange(n)),
        "N": ("layer", np.full(n, 256)),
        "M": ("layer", np.full(n, 128)),
    }
    return xr.Dataset(data, coords=coords, attrs={"model": "hand-built"})


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic model analyzed with every optional panel, and its report."""
    tree = synthetic_collection()
    path = tmp_path_factory.mktemp("report") / "synthetic.html"
    details = rmtkit.analyze(tree, randomize=True, mp_fit=True, progress=False)
    rmtkit.report(details, path, weights=tree, progress=False)
    return details, path, Page(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# What the page holds.


@pytest.mark.slow
def test_page_holds_the_analysis_and_each_fitted_layer_s_figures(synthetic):
    details, _, p = synthetic
    names = list(details["name"].values)
    labels = [str(w) for w in details["warning"].values]
    assert labels[2:] == ["too-few-evals", "non-finite-weights"] and labels[0] == ""
    assert [r["search"].split()[0] for r in p.rows] == names
    cols = columns(p)
    assert cols[:3] == ["layer_id", "name", "kind"] and cols[-1] == "warning"
    for r, i in zip(p.rows, range(len(names)), strict=True):  # every number is the Dataset's
        for c, v in zip(cols, r["cells"], strict=True):
            value = details[c].values[i]
            if c in ("name", "kind", "warning"):
                assert v == str(value)
            elif np.isfinite(value):
                assert float(v) == float(value), (c, v, value)
            else:
                assert v == "", (c, v)
    assert [r["group"] for r in p.rows] == [page.warning_class(lab) for lab in labels]
    assert [r["group"] for r in p.rows][2:] == ["scale", "nodata"]
    # fitted rows: ESD + D(xmin) + randomized + MP; the others: no figures
    assert p.details[:2] == [["esd", "dxmin", "randomized", "mp"]] * 2
    assert p.details[2:] == [[], []]
    assert "Not fitted (too-few-evals)" in p.text and "Not fitted (non-finite-weights)" in p.text
    assert p.model_figures == ["flow", "hist"]


@pytest.mark.slow
def test_summary_and_warning_counts_are_the_analysis(synthetic):
    details, _, p = synthetic
    means = rmtkit.summary(details)
    for name, value in means.data_vars.items():
        row = re.search(
            rf'<th scope="row">{name}</th><td class="num"[^>]*>([^<]*)</td>', p.text
        ).group(1)
        assert row == page.fmt(float(value)), name
    for label, n in collections.Counter(str(w) for w in details["warning"].values).items():
        shown = label or "ok"
        assert re.search(rf">{re.escape(shown)}</span></td><td class=\"num\">{n}</td>", p.text)
        if label:  # explained with the RowWarning docstring
            doc = " ".join(RowWarning(label).__doc__.split()).split("``")[0][:30]
            assert html.escape(doc) in p.text


@pytest.mark.slow
def test_page_is_self_contained_with_unique_resolvable_ids(synthetic):
    _, path, p = synthetic
    assert p.external == [], p.external[:5]  # no src, no link, no external href or url()
    assert "@import" not in p.text and "<script src" not in p.text
    assert p.text.count("<script>") == 1 and p.text.count("<style>") == 1
    assert len(p.ids) == len(set(p.ids)), collections.Counter(p.ids).most_common(3)
    assert set(p.refs) <= set(p.ids), sorted(set(p.refs) - set(p.ids))[:5]
    assert ' style="' not in p.text  # every figure style became a class of the one sheet
    used = {c for c in p.classes if re.fullmatch(r"s\d+", c)}
    defined = set(re.findall(r"svg \.(s\d+)\{", p.text))
    assert used and used <= defined
    assert path.stat().st_size < 400_000  # 2 layers x 4 panels + 2 model figures


def _drawn(root):
    """(tag, text) of each drawing element of an SVG tree, in document order."""
    ns = "{http://www.w3.org/2000/svg}"
    keep = {"path", "use", "text", "tspan", "rect", "circle", "line", "polyline", "image"}
    return [
        (el.tag.removeprefix(ns), (el.text or "").strip())
        for el in root.iter()
        if el.tag.removeprefix(ns) in keep
    ]


def _numbers(root, attr):
    return [
        float(x)
        for el in root.iter()
        for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", el.get(attr) or "")
    ]


def test_compact_svg_draws_the_same_elements_at_the_same_places():
    import io

    import matplotlib as mpl

    with mpl.rc_context(svg.RC):
        fig = Figure(figsize=(3, 2))
        ax = fig.add_subplot()
        ax.loglog([1, 10, 100], [3, 0.2, 0.01], "o-", label="ESD α")
        ax.set_title("a <title> & more")
        ax.legend()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
    original = ET.fromstring(buf.getvalue())
    styles = svg.StyleTable()
    compact = ET.fromstring(svg.compact_svg(buf.getvalue(), styles, "p-"))
    assert _drawn(compact) == _drawn(original)  # nothing dropped, nothing reordered
    for attr in ("d", "x", "y"):
        a, b = _numbers(original, attr), _numbers(compact, attr)
        assert len(a) == len(b) and np.allclose(a, b, atol=0.051), attr
    assert "a <title> & more" in [t for _, t in _drawn(compact)]
    ids = [el.get("id") for el in compact.iter() if el.get("id")]
    assert ids and all(i.startswith("p-") for i in ids)
    hrefs = [el.get("href")[1:] for el in compact.iter() if el.get("href")]
    assert hrefs and set(hrefs) <= set(ids)
    assert all(el.get("style") is None for el in compact.iter())
    assert len(styles) == len({el.get("style") for el in original.iter() if el.get("style")})
    assert compact.get("viewBox") == original.get("viewBox") and compact.get("width") is None


def test_report_is_deterministic_and_written_whole(tmp_path):
    ds = hand_built([2.5, 3.0, 7.1, 1.7])
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    rmtkit.report(ds, a, progress=False)
    rmtkit.report(ds, b, progress=False)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]  # no leftovers
    assert a.read_text().endswith("</html>\n")


def test_goodness_of_fit_columns_are_shown_when_present(tmp_path):
    n = 3
    gof = {
        "pl_pvalue": [0.5, 0.02, np.nan],
        "pl_pvalue_se": [0.01, 0.004, np.nan],
        "R_lognormal": [2.0, -3.0, np.nan],
        "p_lognormal": [0.01, 0.001, np.nan],
        "R_exponential": [0.3, 1.0, np.nan],
        "p_exponential": [0.6, 0.04, np.nan],
    }
    with_gof = hand_built([2.5, 3.0, np.nan], **gof)
    rmtkit.report(with_gof, tmp_path / "gof.html", progress=False)
    text = (tmp_path / "gof.html").read_text()
    assert "pl_pvalue" in columns(Page(text))
    assert text.count("<h4>Goodness of fit</h4>") == n
    assert "power-law p-value: <b>0.5</b> ± 0.01 — the power law is not rejected" in text
    assert "<b>0.02</b> ± 0.004 — below 0.1: the tail is not a power law" in text
    assert "<td>lognormal</td><td class='num'>2</td><td class='num'>0.01</td><td>power law " in text
    assert "<td>lognormal</td><td class='num'>-3</td>" in text and "lognormal favoured" in text
    assert "no significant preference" in text  # exponential, p = 0.6
    rmtkit.report(hand_built([2.5, 3.0]), tmp_path / "plain.html", progress=False)
    plain = (tmp_path / "plain.html").read_text()
    assert "Goodness of fit" not in plain and "pl_pvalue" not in columns(Page(plain))


def test_text_from_the_model_is_escaped(tmp_path):
    nasty = "<script>alert(1)</script>&\"'"
    ds = hand_built([2.5, 3.0]).assign_attrs(model=nasty, note=nasty)
    rmtkit.report({nasty: ds, "b&b": hand_built([4.0])}, tmp_path / "x.html", progress=False)
    text = (tmp_path / "x.html").read_text()
    assert "<script>alert" not in text and text.count("<script>") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#x27;" in text
    assert "b&amp;b" in text


def test_a_label_this_version_does_not_know(tmp_path):
    """A newer analysis' label (issue 16's ``not-power-law``): coloured as 'other', explained
    as unknown, its row still counted as fitted when its alpha is finite."""
    ds = hand_built([2.5, 3.0])
    ds["warning"] = ("layer", np.array(["not-power-law", ""]))
    rmtkit.report(ds, tmp_path / "x.html", progress=False)
    p = Page((tmp_path / "x.html").read_text())
    assert [r["group"] for r in p.rows] == ["other", "ok"]
    assert "does not know" in p.text
    assert "<b>2</b> rows, <b>2</b> fitted" in p.text


def test_series_from_a_concatenated_dataset(tmp_path):
    models = {"early": hand_built([7.5, 6.5, 5.0]), "late": hand_built([3.0, 2.5, 2.2])}
    stacked = rmtkit.concat(models, dim="epoch")
    rmtkit.report(stacked, tmp_path / "s.html", progress=False)
    text = (tmp_path / "s.html").read_text()
    p = Page(text)
    assert "2 epochs compared" in text
    assert [k for k in p.model_figures if k.startswith("series")] == [
        "series_flow",
        "series_hist",
        "series_trend",
    ]
    for metric in ("alpha", "alpha_weighted"):  # ranking: lowest first
        ranked = re.search(
            rf'<th scope="row">{metric}</th><td><ol class="rank">(.*?)</ol>', text
        ).group(1)
        order = re.findall(r"<li>(\w+) ", ranked)
        means = {k: float(rmtkit.summary(v)[metric]) for k, v in models.items()}
        assert order == sorted(means, key=means.get)
    assert text.count('<section class="model"') == 2


# ---------------------------------------------------------------------------------------------
# Bad input: the page still renders and says why.


def test_empty_dataset_page_says_why(tmp_path):
    rmtkit.report(xr.Dataset(), tmp_path / "e.html", progress=False)
    p = Page((tmp_path / "e.html").read_text())
    assert p.notices and "this Dataset is empty" in p.notices[0]
    assert p.rows == [] and p.model_figures == []
    rmtkit.report(hand_built([2.5]).isel(layer=[]), tmp_path / "r.html", progress=False)
    p = Page((tmp_path / "r.html").read_text())
    assert "the analysis has no rows" in p.notices[0] and p.rows == []


@pytest.mark.slow
def test_every_layer_failed_page_says_why(tmp_path):
    tree = from_layers(
        {"a": np.full((64, 64), np.nan), "b": np.zeros((80, 60)), "c": np.ones((8, 4))}
    )
    rmtkit.report(tree, tmp_path / "f.html", progress=False)
    p = Page((tmp_path / "f.html").read_text())
    assert any("No layer has a finite alpha" in n for n in p.notices), p.notices
    assert [r["group"] for r in p.rows] == ["nodata", "nodata", "scale"]
    assert p.model_figures == [] and "no correlation flow" in p.text
    assert all(d == [] for d in p.details)


def test_nan_only_columns_are_named(tmp_path):
    ds = hand_built([2.5, 3.0, 4.0]).assign(D=("layer", np.full(3, np.nan)))
    rmtkit.report(ds, tmp_path / "n.html", progress=False)
    p = Page((tmp_path / "n.html").read_text())
    assert any(
        n.startswith("Columns with no value on any layer") and ": D." in n for n in p.notices
    )
    assert [r["cells"][columns(p).index("D")] for r in p.rows] == ["", "", ""]
    nan_alpha = hand_built([np.nan, np.nan])
    rmtkit.report(nan_alpha, tmp_path / "a.html", progress=False)
    p = Page((tmp_path / "a.html").read_text())
    assert any("No layer has a finite alpha" in n for n in p.notices)
    assert re.search(
        r'<th scope="row">alpha</th><td class="num" title="NaN on every layer">—', p.text
    )


@pytest.mark.slow
def test_weights_other_than_the_analyzed_ones_are_said(tmp_path):
    w = heavy_tailed(256, 128, 3)
    details = rmtkit.analyze(from_layers({"fc": w}), progress=False)
    rmtkit.report(details, tmp_path / "m.html", weights=from_layers({"fc": 2.0 * w}))
    p = Page((tmp_path / "m.html").read_text())
    assert p.details == [["esd", "dxmin"]]
    lam = float(details["lambda_max"][0])
    note = f"λmax of the spectrum drawn ({4 * lam:.4g}) is not the table's ({lam:.4g})"
    assert html.escape(note) in p.text
    other = rmtkit.analyze(from_layers({"other": w}), progress=False)
    rmtkit.report(other, tmp_path / "o.html", weights=from_layers({"fc": w}))
    p = Page((tmp_path / "o.html").read_text())
    assert p.details == [[]] and "No spectrum of this layer in the weights given" in p.text


def test_missing_weights_are_said(tmp_path):
    rmtkit.report(hand_built([2.5, 3.0]), tmp_path / "w.html", progress=False)
    p = Page((tmp_path / "w.html").read_text())
    assert any("No per-layer figures: they need the weights" in n for n in p.notices)
    rmtkit.report(hand_built([2.5]), tmp_path / "x.html", layer_figures=False, progress=False)
    assert not Page((tmp_path / "x.html").read_text()).notices


@pytest.mark.bad_input
def test_bad_arguments_raise_typed_errors(tmp_path):
    ds = hand_built([2.5])
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        rmtkit.report(ds, tmp_path / "no" / "x.html")
    with pytest.raises(InvalidArgumentError, match="is a folder"):
        rmtkit.report(ds, tmp_path)
    with pytest.raises(InvalidArgumentError, match="`progress`"):
        rmtkit.report(ds, tmp_path / "x.html", progress="sometimes")
    with pytest.raises(InvalidArgumentError, match="layer_figures"):
        rmtkit.report(ds, tmp_path / "x.html", layer_figures="yes")
    with pytest.raises(InvalidArgumentError, match="apply to models analyzed here"):
        rmtkit.report(ds, tmp_path / "x.html", randomize=True)
    with pytest.raises(InvalidArgumentError, match="a summary"):
        rmtkit.report(rmtkit.summary(ds), tmp_path / "x.html")
    two = rmtkit.concat({"a": ds, "b": ds}, dim="model").expand_dims(run=[0, 1])
    with pytest.raises(InvalidArgumentError, match="one series"):
        rmtkit.report(two, tmp_path / "x.html")
    with pytest.raises(InvalidArgumentError, match="empty"):
        rmtkit.report([], tmp_path / "x.html")
    with pytest.raises(InvalidArgumentError, match="`weights` of a series"):
        rmtkit.report({"a": ds, "b": ds}, tmp_path / "x.html", weights="model.onnx")
    with pytest.raises(InvalidArgumentError, match="`weights` is for Datasets"):
        rmtkit.report(rmtkit.data_path(), tmp_path / "x.html", weights=rmtkit.data_path())
    with pytest.raises(InvalidArgumentError, match="unique"):
        rmtkit.report(rmtkit.concat([ds, ds], names=["a", "a"]), tmp_path / "x.html")
    assert list(tmp_path.iterdir()) == []  # nothing written on an error, no temporary file


def test_progress_bar_on_stderr(tmp_path, capsys):
    rmtkit.report(hand_built([2.5, 3.0]), tmp_path / "p.html", progress="always")
    err = capsys.readouterr().err
    assert "report [" in err and "report: 1 figure sets in" in err


@pytest.mark.slow
def test_rmtkit_report_is_callable_after_importing_the_package(tmp_path):
    """``rmtkit.report`` names the function or the package depending on import order; both
    are callable."""
    code = (
        "import sys, xarray as xr, rmtkit.report, rmtkit\n"
        "assert callable(rmtkit.report)\n"
        f"rmtkit.report(xr.Dataset(), {str(tmp_path / 'a.html')!r}, progress=False)\n"
        "from rmtkit import report\n"
        "assert report is rmtkit.report.report or report is rmtkit.report\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert (tmp_path / "a.html").is_file()


# ---------------------------------------------------------------------------------------------
# The command line.


@pytest.mark.slow
def test_cli_report_and_analyze_report(tmp_path, capsys):
    model = str(rmtkit.data_path())
    out = tmp_path / "r.html"
    assert main(["report", model, "-o", str(out), "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote the report {out}" in stdout and out.is_file()
    p = Page(out.read_text())
    assert [r["search"].split()[0] for r in p.rows] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [len(d) for d in p.details] == [0, 2, 2, 2, 0]  # ESD + D(xmin) per fitted layer
    out2 = tmp_path / "a.html"
    assert main(["analyze", "--quiet", "--randomize", "--report", str(out2)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.index("Summary (means") < stdout.index(f"wrote the report {out2}")
    assert [len(d) for d in Page(out2.read_text()).details] == [0, 3, 3, 3, 0]
    saved = tmp_path / "d.nc"
    rmtkit.analyze(model, progress=False).to_netcdf(saved)
    out3 = tmp_path / "s.html"
    assert main(["report", str(saved), str(saved), "-o", str(out3), "--quiet"]) == 0
    assert "2 models compared" in out3.read_text()


@pytest.mark.bad_input
def test_cli_report_errors(tmp_path, capsys):
    model = str(rmtkit.data_path())
    assert main(["report", model, "-o", str(tmp_path / "no" / "r.html")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "r.html")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["analyze", "--report", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", model])  # -o is required
