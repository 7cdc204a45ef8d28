"""The HTML report: its size, how long it takes to write, and how fast Chromium renders it.

    python benchmarks/report.py                  # the embedded model and a 50-layer model
    python benchmarks/report.py --layers 100 --loads 9

Pages (every optional panel: ``randomize=True, mp_fit=True``):

- the embedded model (5 rows, 3 layers drawn);
- a synthetic model of ``--layers`` dense layers (heavy-tailed 256x128, 384x192, 512x256 in
  turn: 128 to 256 eigenvalues, every layer fitted and drawn);
- a series: three checkpoints (epochs 1, 4, 12) of a 64-128-128-10 MLP trained on
  scikit-learn's digits, the run of ``tests/apps/test_report_browser.py`` (needs torch and
  scikit-learn; skipped without them);
- baseline: the same 50-layer analysis written with ``layer_figures=False`` (the same table,
  summary and model figures; no layer figure).

Printed per page: its size and size per drawn layer against the budget
(``rmtkit.report.build.size_budget``); the time to write it against the time of the analysis
it reports (same process, same run); and the browser's own clock for a fresh load of the file
(navigation start to the end of the load event, median of ``--loads`` loads, one browser) and
for opening one layer's row (click to the next frame, figures inserted and laid out), with the
ratio to the baseline page. Exit status 1 when a page takes 2 s or more to render (the issue's
target). Needs Chromium + chromedriver (.ci/install_browser) and selenium.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import rmtkit  # noqa: E402
from rmtkit.collection import from_layers  # noqa: E402
from rmtkit.report.build import size_budget  # noqa: E402

TARGET_MS = 2000.0
SHAPES = ((256, 128), (384, 192), (512, 256))


def synthetic(n_layers: int):
    rng = np.random.default_rng(0)
    layers = {}
    for i in range(n_layers):
        n, m = SHAPES[i % len(SHAPES)]
        w = rng.standard_t(2.5 + (i % 5) * 0.5, size=(n, m))
        w[:, : 2 + i % 4] *= 5.0
        layers[f"block{i // 2}/fc{i % 2}"] = w
    return from_layers(layers)


def series() -> dict | None:
    """Checkpoints of one training run (as ``train_series`` of the browser tests)."""
    try:
        import copy

        import torch
        from sklearn.datasets import load_digits
    except ImportError:
        return None
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
    for epoch in range(1, 13):
        for idx in torch.randperm(len(x), generator=order).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        if epoch in (1, 4, 12):
            out[f"epoch {epoch}"] = copy.deepcopy(model)
    return out


def write_series(models: dict, folder: Path):
    t0 = time.perf_counter()
    details = rmtkit.analyze_many(models, randomize=True, mp_fit=True, progress=False)
    t_analyze = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    path = rmtkit.report(details, folder / "series.html", weights=models, progress=False)
    t_report, c_report = time.perf_counter() - t0, time.process_time() - c0
    return path, t_analyze, t_report, c_report


def write(name, model, folder: Path, **kw):
    t0 = time.perf_counter()
    details = rmtkit.analyze(model, randomize=True, mp_fit=True, progress=False)
    t_analyze = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    path = rmtkit.report(details, folder / f"{name}.html", weights=model, progress=False, **kw)
    t_report, c_report = time.perf_counter() - t0, time.process_time() - c0
    return path, t_analyze, t_report, c_report


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--window-size=1280,900"
    ).split():
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='rmtkit-bench-')}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


OPEN_ROW = """
const done = arguments[arguments.length - 1];
const row = Array.from(document.querySelectorAll('tr.row'))
    .find(r => r.nextElementSibling.querySelector('template'));
if (!row) { done(null); return; }
const t0 = performance.now();
row.click();
row.nextElementSibling.getBoundingClientRect();
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
"""


def render_times(drv, path: Path, loads: int) -> tuple[float, float | None]:
    """Median load time (ms, the browser's clock) and the time to open one layer row."""
    times = []
    for _ in range(loads):
        drv.get("about:blank")
        drv.get(path.as_uri())
        times.append(
            drv.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
        )
    opened = drv.execute_async_script(OPEN_ROW)
    return statistics.median(times), opened


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="rmtkit-report-bench-"))
    tree = synthetic(args.layers)
    pages = {"embedded": write("embedded", rmtkit.data_path(), folder)}
    checkpoints = series()
    if checkpoints is not None:
        pages["series of 3 checkpoints"] = write_series(checkpoints, folder)
    pages[f"{args.layers} layers"] = write("many", tree, folder)
    pages["baseline (no layer figures)"] = write("baseline", tree, folder, layer_figures=False)
    drv = browser()
    try:
        timing = {name: render_times(drv, p[0], args.loads) for name, p in pages.items()}
    finally:
        drv.quit()
    base_ms = timing["baseline (no layer figures)"][0]
    print(
        f"{'page':<28} {'kB':>7} {'layers':>6} {'kB/layer':>8} {'budget kB':>9} "
        f"{'analyze s':>9} {'report s':>8} {'cpu s/layer':>11} {'load ms':>8} {'x base':>6} "
        f"{'open ms':>7}"
    )
    slow = False
    for name, (path, t_an, t_rep, c_rep) in pages.items():
        text = path.read_text(encoding="utf-8")
        layers = text.count("<template>")
        size = path.stat().st_size
        budget = size_budget(text.count('<tr class="row"'), layers)
        load, opened = timing[name]
        slow |= load >= TARGET_MS
        per_layer = f"{size / layers / 1e3:8.1f}" if layers else f"{'-':>8}"
        s_layer = f"{c_rep / layers:11.2f}" if layers else f"{'-':>11}"
        print(
            f"{name:<28} {size / 1e3:7.0f} {layers:6d} {per_layer} {budget / 1e3:9.0f} "
            f"{t_an:9.1f} {t_rep:8.1f} {s_layer} {load:8.0f} {load / base_ms:6.2f} "
            f"{'-' if opened is None else f'{opened:.0f}':>7}"
        )
    print(f"render target: < {TARGET_MS:.0f} ms per page: {'MISSED' if slow else 'met'}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
