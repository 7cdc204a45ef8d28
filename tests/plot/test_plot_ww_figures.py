"""WeightWatcher's per-layer figures: one file per layer and figure, from rmtkit.plot_layers
and from WeightWatcher(...).analyze(plot=True), never on screen; the figures of the optional
analyses (detX, level spacing, eigenvectors)."""

import subprocess
import sys

import numpy as np
import pytest
from _deps import require

import rmtkit

require("matplotlib")

RNG = np.random.default_rng(7)
LAYERS = {
    "conv": (0.1 * RNG.standard_t(3.0, size=(24, 16, 3, 3))).astype(np.float32),
    "fc": (0.1 * RNG.standard_t(3.0, size=(120, 90))).astype(np.float32),
}


def model():
    return rmtkit.from_layers(LAYERS)


@pytest.mark.slow
def test_plot_layers_writes_every_figure_of_every_layer(tmp_path):
    details = rmtkit.analyze(
        model(),
        randomize=True,
        mp_fit=True,
        detx=True,
        spacing=True,
        vectors=True,
        progress=False,
    )
    out = rmtkit.plot_layers(model(), details, savefig=tmp_path)
    panels = {
        "esd_loglog",
        "esd_linlin",
        "esd_loglin",
        "pl_candidates",
        "randomized",
        "mp",
        "detx",
        "level_spacing",
        "deltas",
        "vector_histograms",
        "vector_metrics",
    }
    assert set(out) == {"0_conv", "1_fc"}
    for stem, files in out.items():
        assert set(files) == panels
        for panel, path in files.items():
            assert path.name == f"{stem}_{panel}.png" and path.stat().st_size > 1000
    assert len(list(tmp_path.iterdir())) == 2 * len(panels)


def test_new_figures_from_arrays():
    w = LAYERS["fc"].astype(np.float64)
    e = np.asarray(rmtkit.esd(w))
    fit = rmtkit.fit_pl(e)
    fig = rmtkit.plot_detx(e, fit)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("detX" in t for t in labels) and any("xmin" in t for t in labels)
    fig = rmtkit.plot_spacing(e, fit)
    assert any("<r>" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    fig = rmtkit.plot_spacing(e, fit, kind="deltas")
    assert fig.axes[0].lines[0].get_xdata().size == e.size - 1
    fig = rmtkit.plot_vectors(rmtkit.eigenvector_metrics(w), fit, kind="vector_metrics")
    assert len(fig.axes) == 4
    with pytest.raises(rmtkit.errors.InvalidArgumentError):
        rmtkit.plot_spacing(e, kind="histogram")


@pytest.mark.slow
def test_facade_plot_true_writes_files_and_shows_nothing(tmp_path):
    """In a fresh process: the figures land in ``savefig`` (one file per layer and figure)
    and matplotlib.pyplot is never imported (nothing can pop up)."""
    torch = require("torch")
    del torch
    code = f"""
import sys, numpy as np, torch, rmtkit
net = torch.nn.Sequential(torch.nn.Linear(90, 120), torch.nn.ReLU(), torch.nn.Linear(120, 60))
w = rmtkit.WeightWatcher(net)
w.analyze(plot=True, savefig={str(tmp_path)!r}, randomize=True, mp_fit=True)
assert "matplotlib.pyplot" not in sys.modules
print(sorted(w.figures))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 * 6  # two layers x (3 ESDs, candidates, randomized, MP)
    assert "0_0_esd_loglog.png" in files and "1_2_mp.png" in files
