"""rmtkit.report in a real browser: Debian's headless Chromium driven by Selenium.

The pages: the embedded model and a series of three checkpoints of one training run (a small
MLP trained here on scikit-learn's digits), both with every optional panel (randomize, MP fit),
and the bad-input pages. Checked in the browser: no console error, no request for anything
(the page is self-contained), the table sorts on a header click and filters, a layer's
figures appear when its row is opened, every figure has a nonzero size, and the SVG
compaction draws the same pixels as matplotlib's own file. A full-page screenshot of each
report is written to ``$RMTKIT_ARTIFACTS`` (default: pytest's temporary folder; the path is
printed), with the browser's load times (``report_render_times.json``).

Size budget (asserted): ``rmtkit.report.build.size_budget``, 100 kB + 4 kB per table row +
36 kB per layer drawn with its four panels: 2.1 MB for 50 layers. Render time: recorded
here, not asserted (no timed tests); ``benchmarks/report.py`` measures it against the 2 s
target. What keeps it fast is asserted: a page draws only its model-level figures at load,
the layer figures wait in ``<template>`` elements until their row is opened.

Needs ``selenium`` (the ``test`` extra) and ``/usr/bin/chromium`` + ``/usr/bin/chromedriver``
(``.ci/install_browser``; or ``$RMTKIT_CHROMIUM`` / ``$RMTKIT_CHROMEDRIVER``). Without them the
tests skip, and under ``RMTKIT_REQUIRE_ALL_DEPS=1`` (CI) they fail.
"""

import base64
import copy
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _deps import require

require("matplotlib")
webdriver = require("selenium.webdriver")

import matplotlib as mpl  # noqa: E402
import matplotlib.image  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

import rmtkit  # noqa: E402
from rmtkit.collection import from_layers  # noqa: E402
from rmtkit.report import svg  # noqa: E402
from rmtkit.report.build import size_budget  # noqa: E402

#: the Chromium flags that work on a headless CI machine with no network
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def _executable(env: str, *candidates: str) -> str | None:
    """``$env`` when it is set (and only it), else the first of ``candidates`` found."""
    names = (os.environ[env],) if os.environ.get(env) else candidates
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = _executable("RMTKIT_CHROMIUM", "/usr/bin/chromium", "chromium")
    driver = _executable("RMTKIT_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")
    if chromium is None or driver is None:
        why = "the report's browser tests need chromium and chromedriver: run .ci/install_browser"
        if os.environ.get("RMTKIT_REQUIRE_ALL_DEPS"):
            pytest.fail(f"RMTKIT_REQUIRE_ALL_DEPS is set but {why}")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("RMTKIT_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("report-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nreport test artifacts: {path}")
    return path


def train_series(torch, epochs=(1, 4, 12)) -> dict:
    """Checkpoints of one training run: a 64-128-128-10 MLP on scikit-learn's digits (SGD)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.data / 16.0).astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
    model.append(nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = torch.Generator().manual_seed(0)
    out = {}
    for epoch in range(1, max(epochs) + 1):
        for idx in torch.randperm(len(x), generator=order).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        if epoch in epochs:
            out[f"epoch {epoch}"] = copy.deepcopy(model)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95  # trained: the series ends on a good model
    return out


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """The reports opened in the browser."""
    folder = tmp_path_factory.mktemp("report-pages")
    full = dict(randomize=True, mp_fit=True, progress=False)
    out = {"embedded": rmtkit.report(rmtkit.data_path(), folder / "embedded.html", **full)}
    torch = require("torch")
    require("sklearn")
    out["series"] = rmtkit.report(train_series(torch), folder / "series.html", **full)
    out["empty"] = rmtkit.report(xr.Dataset(), folder / "empty.html", progress=False)
    failed = from_layers({"a": np.full((64, 64), np.nan), "b": np.zeros((80, 60))})
    out["failed"] = rmtkit.report(failed, folder / "failed.html", progress=False)
    nan = rmtkit.analyze(rmtkit.data_path(), progress=False)
    nan["D"] = nan["D"] * np.nan
    out["nan_columns"] = rmtkit.report(
        nan, folder / "nan.html", weights=rmtkit.data_path(), progress=False
    )
    return out


def open_page(browser, path: Path) -> list[dict]:
    """Load ``path``; return the console messages of level SEVERE (errors) it logged."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(path.as_uri())
    return [m for m in browser.get_log("browser") if m["level"] == "SEVERE"]


def js(browser, script: str, *args):
    return browser.execute_script(script, *args)


def layer_count(path: Path) -> int:
    """Layers drawn with their panels in a page (their ``<template>`` elements)."""
    return path.read_text(encoding="utf-8").count("<template>")


# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reports_are_within_the_size_budget(pages):
    for name in ("embedded", "series"):
        text = pages[name].read_text(encoding="utf-8")
        size, rows, drawn = (
            len(text.encode()),
            text.count('<tr class="row"'),
            layer_count(pages[name]),
        )
        budget = size_budget(rows, drawn)
        print(
            f"{name}: {size / 1e3:.0f} kB, {rows} rows, {drawn} drawn (budget {budget / 1e3:.0f})"
        )
        assert (rows, drawn) == {"embedded": (5, 3), "series": (9, 6)}[name]
        assert size <= budget, (name, size, budget)
    assert size_budget(50, 50) <= 2_100_000


@pytest.mark.slow
def test_pages_load_with_no_error_no_request_and_only_model_figures_drawn(
    browser, pages, artifacts
):
    times = {}
    for name, path in pages.items():
        errors = open_page(browser, path)
        assert errors == [], (name, errors)
        # nothing fetched: no script, style, image, font or frame from anywhere
        assert js(browser, "return performance.getEntriesByType('resource').length") == 0
        drawn = js(browser, "return document.querySelectorAll('svg.fig').length")
        waiting = js(browser, "return document.querySelectorAll('template').length")
        assert waiting == layer_count(path), name
        assert drawn == path.read_text().count('class="fig"') - js(
            browser,
            "return Array.from(document.querySelectorAll('template'))"
            ".reduce((n, t) => n + t.content.querySelectorAll('svg.fig').length, 0)",
        )
        times[name] = js(
            browser,
            "const n = performance.getEntriesByType('navigation')[0];"
            "return {dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd,"
            " bytes: n.decodedBodySize};",
        )
    (artifacts / "report_render_times.json").write_text(json.dumps(times, indent=1))
    print("browser load times (ms):", {k: round(v["load_ms"]) for k, v in times.items()})


def _column_values(browser, table_id: str, column: str) -> list[str]:
    return js(
        browser,
        """const t = document.getElementById(arguments[0]);
        const ths = Array.from(t.tHead.rows[0].cells);
        const col = ths.findIndex(th => th.textContent.trim() === arguments[1]);
        return Array.from(t.tBodies[0].querySelectorAll('tr.row'))
            .filter(r => !r.hidden).map(r => r.children[col].getAttribute('data-v'));""",
        table_id,
        column,
    )


def _header(browser, table_id: str, column: str):
    for th in browser.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th"):
        if th.text.replace("\n", "") == column:
            return th
    raise AssertionError(f"no column {column}")


@pytest.mark.slow
def test_table_sorts_when_a_header_is_clicked(browser, pages):
    assert open_page(browser, pages["embedded"]) == []
    details = rmtkit.analyze(rmtkit.data_path(), progress=False)
    alpha = [float(a) for a in details["alpha"].values]
    finite = sorted(a for a in alpha if np.isfinite(a))
    nans = sum(not np.isfinite(a) for a in alpha)
    header = _header(browser, "layers-0", "alpha")
    header.find_element(By.TAG_NAME, "button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    values = _column_values(browser, "layers-0", "alpha")
    assert [float(v) for v in values[: len(finite)]] == finite and values[len(finite) :] == [
        ""
    ] * nans
    header.find_element(By.TAG_NAME, "button").click()
    assert header.get_attribute("aria-sort") == "descending"
    values = _column_values(browser, "layers-0", "alpha")
    assert [float(v) for v in values[: len(finite)]] == finite[::-1]  # NaN stays last
    _header(browser, "layers-0", "name").find_element(By.TAG_NAME, "button").click()
    assert _column_values(browser, "layers-0", "name") == sorted(details["name"].values)
    # each layer's detail row moved with it
    assert js(
        browser,
        "return Array.from(document.querySelectorAll('#layers-0 tr.row'))"
        ".every(r => r.nextElementSibling.classList.contains('detail'))",
    )
    assert browser.get_log("browser") == []


@pytest.mark.slow
def test_table_filters_by_text_and_warning_group(browser, pages):
    assert open_page(browser, pages["embedded"]) == []
    box = browser.find_element(By.CSS_SELECTOR, '.controls[data-table="layers-0"] input.filter')
    box.send_keys("fc")
    assert _column_values(browser, "layers-0", "name") == ["fc1", "fc2", "fc3"]
    shown = browser.find_element(By.CSS_SELECTOR, '.controls[data-table="layers-0"] .shown')
    assert shown.text == "3 of 5 rows"
    box.clear()
    box.send_keys("too-few")
    assert _column_values(browser, "layers-0", "name") == ["conv1", "fc3"]
    box.send_keys(Keys.BACKSPACE * len("too-few"))
    assert len(_column_values(browser, "layers-0", "name")) == 5
    group = Select(browser.find_element(By.CSS_SELECTOR, "select.group"))
    group.select_by_value("alpha")
    assert _column_values(browser, "layers-0", "warning") == ["over-trained", "over-trained"]
    group.select_by_value("")
    assert len(_column_values(browser, "layers-0", "name")) == 5


def _figure_sizes(browser, root) -> list[tuple[float, float]]:
    return js(
        browser,
        "return Array.from(arguments[0].querySelectorAll('svg.fig'))"
        ".map(s => [s.getBoundingClientRect().width, s.getBoundingClientRect().height]);",
        root,
    )


@pytest.mark.slow
def test_opening_a_row_shows_its_figures_and_every_figure_has_a_size(browser, pages, artifacts):
    for name in ("embedded", "series"):
        assert open_page(browser, pages[name]) == []
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.row")
        opened = 0
        for row in rows:
            detail = row.find_element(By.XPATH, "following-sibling::tr[1]")
            assert not detail.is_displayed()
            row.find_element(By.CSS_SELECTOR, "button.toggle").click()
            assert detail.is_displayed()
            assert (
                row.find_element(By.CSS_SELECTOR, "button.toggle").get_attribute("aria-expanded")
                == "true"
            )
            sizes = _figure_sizes(browser, detail)
            if row.get_attribute("data-group") in ("scale", "nodata"):
                assert sizes == [] and "Not fitted" in detail.text
            else:
                assert len(sizes) == 4, (name, row.text, sizes)  # ESD, D(xmin), randomized, MP
                opened += 1
        assert opened == layer_count(pages[name])
        everything = _figure_sizes(browser, browser.find_element(By.TAG_NAME, "body"))
        assert everything and all(w > 50 and h > 50 for w, h in everything), everything
        assert len(everything) == pages[name].read_text().count('class="fig"')
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"captureBeyondViewport": True, "format": "png"}
        )
        png = artifacts / f"report_{name}.png"
        png.write_bytes(base64.b64decode(shot["data"]))
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 1500 and image[..., :3].std() > 0.05  # a tall, drawn page
        print(f"screenshot: {png}")
        # closing a row hides it again
        rows[1].click()
        assert not rows[1].find_element(By.XPATH, "following-sibling::tr[1]").is_displayed()
        assert browser.get_log("browser") == []


@pytest.mark.slow
def test_series_page_compares_the_checkpoints(browser, pages):
    assert open_page(browser, pages["series"]) == []
    title = browser.find_element(By.CSS_SELECTOR, "#series h2").text
    assert title == "3 models compared"
    side = browser.find_element(By.CSS_SELECTOR, "table.side")
    assert [th.text for th in side.find_elements(By.CSS_SELECTOR, "thead th")][1:] == [
        "epoch 1",
        "epoch 4",
        "epoch 12",
    ]
    keys = [
        f.get_attribute("data-key")
        for f in browser.find_elements(By.CSS_SELECTOR, "#series figure")
    ]
    assert keys == ["series_flow", "series_hist", "series_trend"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.model")) == 3


@pytest.mark.slow
def test_bad_input_pages_render_and_say_why(browser, pages):
    expected = {
        "empty": "this Dataset is empty",
        "failed": "No layer has a finite alpha",
        "nan_columns": "Columns with no value on any layer",
    }
    for name, text in expected.items():
        assert open_page(browser, pages[name]) == []
        notices = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "p.notice")]
        assert any(text in n for n in notices), (name, notices)
        for p in browser.find_elements(By.CSS_SELECTOR, "p.notice"):
            if not p.get_attribute("class").endswith("nojs"):
                assert p.is_displayed()


def test_compacted_svg_draws_the_same_pixels(browser, tmp_path):
    """matplotlib's own SVG file and the report's compacted inline SVG, side by side at the
    same size: the same picture up to antialiasing (coordinates rounded to 0.1 pt)."""
    with mpl.rc_context(svg.RC):
        fig = Figure(figsize=(4.0, 3.0), dpi=100)
        fig.subplots_adjust(left=0.15, right=0.96, bottom=0.15, top=0.9)
        ax = fig.add_subplot()
        x = np.geomspace(0.1, 30, 40)
        ax.loglog(x, 3 * x**-2.2, "o", ms=4, label="ESD")
        ax.loglog(x, 2.5 * x**-2.1, "-", lw=2, label="fit α = 2.1")
        ax.axvline(1.3, color="C3", ls="--", label="xmin")
        ax.set_title("log-log ESD and power-law fit")
        ax.legend(loc="lower left")
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    original = buf.getvalue()
    (tmp_path / "original.svg").write_text(original)
    styles = svg.StyleTable()
    inline = svg.compact_svg(original, styles, "c-")
    width = 576  # two side by side fit the window (1280 px)
    (tmp_path / "compare.html").write_text(
        "<!DOCTYPE html><html><head><style>body{margin:0;background:#fff;display:flex}"
        "svg *{stroke-linejoin:round;stroke-linecap:butt}"
        f"svg.fig{{display:block;width:100%;height:auto}}{styles.css()}</style></head><body>"
        f'<div id="a" style="width:{width}px"><img src="original.svg" style="display:block;'
        f'width:{width}px"></div><div id="b" style="width:{width}px">{inline}</div></body></html>'
    )
    assert open_page(browser, tmp_path / "compare.html") == []
    a = matplotlib.image.imread(
        io.BytesIO(browser.find_element(By.ID, "a").screenshot_as_png), format="png"
    )
    b = matplotlib.image.imread(
        io.BytesIO(browser.find_element(By.ID, "b").screenshot_as_png), format="png"
    )
    assert a.shape == b.shape and a.shape[1] >= width
    diff = np.abs(a[..., :3] - b[..., :3])
    assert a[..., :3].std() > 0.05  # something is drawn
    assert diff.mean() < 0.01 and np.mean(diff.max(axis=-1) > 0.5) < 0.01, (
        diff.mean(),
        np.mean(diff.max(axis=-1) > 0.5),
    )
