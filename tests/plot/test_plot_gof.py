"""rmtkit.plot_gof: the bootstrap and tail-model figures of one layer render to real PNGs."""

import jax
import numpy as np
from _deps import require

require("matplotlib")

import matplotlib.image  # noqa: E402

import rmtkit  # noqa: E402


def test_plot_gof_writes_both_figures(tmp_path):
    x = (1.0 - np.random.default_rng(0).random(300)) ** (-1.0 / 1.5)
    figs = rmtkit.plot_gof(x, key=jax.random.key(0), n_boot=20, savefig=tmp_path)
    assert len(figs) == 2
    for name in ("gof_bootstrap.png", "gof_tail.png"):
        path = tmp_path / name
        assert path.stat().st_size > 8_000
        img = matplotlib.image.imread(path)
        assert img.shape[:2] == (480, 640) and img[..., :3].std() > 0.01
    boot, tail = (f.axes[0] for f in figs)
    assert len(boot.patches) > 0 and "p =" in boot.get_title()
    labels = [line.get_label() for line in tail.get_lines()]
    assert labels[0].startswith("data")
    assert {"power law", "lognormal", "exponential", "stretched exp.", "truncated PL"} <= {
        lab.split(" (R")[0] for lab in labels
    }


def test_failed_fit_draws_no_test():
    fig = rmtkit.plot_gof_bootstrap(
        rmtkit.pl_pvalue(np.full(50, 1e-7), key=jax.random.key(0), n_boot=5)
    )
    assert "no test" in fig.axes[0].get_title()
