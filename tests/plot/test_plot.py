"""rmtkit.plot: every figure renders to a real PNG, with predictable file names, headless."""

import subprocess
import sys

import jax
import numpy as np
import pytest
import xarray as xr
from helpers import bucketed_fit_pl, require

require("matplotlib")

import matplotlib.image  # noqa: E402

import rmtkit  # noqa: E402
from rmtkit import plot  # noqa: E402
from rmtkit.collection import from_layers  # noqa: E402
from rmtkit.errors import InvalidArgumentError  # noqa: E402

#: default figure size in pixels (6.4 x 4.8 in at 100 dpi), as (height, width)
SIZE = (480, 640)
MIN_BYTES = 8_000


def check_png(path, size=SIZE):
    """A real PNG of the expected pixel size with more than a blank canvas in it."""
    assert path.is_file(), path
    assert path.stat().st_size > MIN_BYTES, (path, path.stat().st_size)
    img = matplotlib.image.imread(path)
    assert img.shape[:2] == size, img.shape
    assert img[..., :3].std() > 0.05  # not a blank image


def heavy_tailed(n_rows=256, n_cols=128, seed=0):
    """A weight matrix with a power-law-ish spectrum (Student-t entries, a few strong columns)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_t(3.0, size=(n_rows, n_cols))
    w[:, :4] *= 6.0
    return w


def fit_pl(evals):
    """``rmtkit.fit_pl`` on the spectrum padded to its bucket (one compile per bucket)."""
    return bucketed_fit_pl(evals)


@pytest.fixture(scope="module")
def layer():
    w = heavy_tailed()
    evals = np.asarray(rmtkit.esd(w))
    rand = np.asarray(rmtkit.esd(np.random.default_rng(1).permutation(w.ravel()).reshape(w.shape)))
    return w, evals, rand


def test_bucketed_fit_is_fit_pl(layer):
    _, evals, _ = layer
    fast, slow = fit_pl(evals), jax.jit(rmtkit.fit_pl)(evals)  # padded vs unpadded
    for name in ("alpha", "xmin", "D", "num_pl_spikes"):
        assert float(getattr(fast, name)) == pytest.approx(float(getattr(slow, name)), rel=1e-9)


def details_of(alphas, kinds=None, names=None, **extra):
    """A hand-built analyze() Dataset (the schema of the analysis, a few variables)."""
    n = len(alphas)
    kinds = kinds or ["dense"] * n
    names = names or [f"block{i}/fc" for i in range(n)]
    alphas = np.asarray(alphas, dtype=np.float64)
    data = {
        "alpha": ("layer", alphas),
        "xmin": ("layer", np.full(n, 1.0)),
        "D": ("layer", np.full(n, 0.05)),
        "alpha_weighted": ("layer", alphas * 1.5),
        "log_spectral_norm": ("layer", np.linspace(0.5, 1.5, n)),
        "warning": ("layer", np.array([rmtkit.alpha_warning(a) for a in alphas], dtype=object)),
    }
    data.update({k: ("layer", np.asarray(v)) for k, v in extra.items()})
    coords = {
        "name": ("layer", names),
        "kind": ("layer", kinds),
        "layer_id": ("layer", np.arange(n)),
        "N": ("layer", np.full(n, 256)),
        "M": ("layer", np.full(n, 128)),
        "Q": ("layer", np.full(n, 2.0)),
        "rf": ("layer", np.ones(n, dtype=int)),
    }
    return xr.Dataset(data, coords=coords)


# ---------------------------------------------------------------------------------------------
# Per-layer figures.


@pytest.mark.parametrize("scale", plot.SCALES)
def test_plot_esd_renders(tmp_path, layer, scale):
    _, evals, _ = layer
    fit = fit_pl(evals)
    fig = plot.plot_esd(evals, fit, scale=scale, savefig=tmp_path / "esd.png")
    assert fig.axes and fig.axes[0].get_title().endswith("ESD")
    check_png(tmp_path / "esd.png")


def test_plot_esd_computes_the_fit_when_not_given(layer):
    _, evals, _ = layer
    fig = plot.plot_esd(evals)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    alpha = float(fit_pl(evals).alpha)
    assert any(f"α = {alpha:.2f}" in t for t in labels), labels


def test_plot_esd_accepts_a_details_row_and_a_failed_fit(tmp_path, layer):
    _, evals, _ = layer
    row = details_of([float(fit_pl(evals).alpha)], xmin=[float(np.median(evals))])
    plot.plot_esd(evals, row.isel(layer=0), savefig=tmp_path / "a.png")
    check_png(tmp_path / "a.png")
    good = fit_pl(evals)
    failed = good._replace(alpha=np.nan, xmin=np.nan, D=np.nan)  # as fit_pl reports a failure
    fig = plot.plot_esd(evals, failed, scale="linlin", savefig=tmp_path / "b.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "PL fit failed" in labels
    check_png(tmp_path / "b.png")


def test_plot_esd_into_given_axes(layer):
    from matplotlib.figure import Figure

    _, evals, _ = layer
    fig = Figure()
    axes = fig.subplots(1, 3)
    for ax, scale in zip(axes, plot.SCALES):
        assert plot.plot_esd(evals, scale=scale, ax=ax) is fig


@pytest.mark.bad_input
def test_plot_esd_rejects_unknown_scale(layer):
    with pytest.raises(InvalidArgumentError, match="`scale` must be one of"):
        plot.plot_esd(layer[1], scale="semilog")


def test_plot_pl_candidates_marks_the_minimum(tmp_path, layer):
    _, evals, _ = layer
    fig = plot.plot_pl_candidates(evals, savefig=tmp_path)  # a folder: default file name
    check_png(tmp_path / "pl_candidates.png")
    fit = fit_pl(evals)
    d_line = fig.axes[0].get_lines()[0]
    xs, ds = d_line.get_data()
    assert xs[np.argmin(ds)] == pytest.approx(float(fit.xmin))


def test_plot_randomized_draws_the_trap_line(tmp_path, layer):
    _, evals, rand = layer
    fig = plot.plot_randomized(
        evals, rand, max_rand_eval=float(rand.max()), savefig=tmp_path / "r.png"
    )
    check_png(tmp_path / "r.png")
    xs = [line.get_xdata()[0] for line in fig.axes[0].get_lines()]
    assert any(x == pytest.approx(np.log10(rand.max())) for x in xs)


@pytest.mark.slow
def test_plot_mp_overlays_the_fit(tmp_path, layer):
    w, evals, rand = layer
    from rmtkit.core.mp import mp_fit

    fit = mp_fit(rand, Q=2.0)
    fig = plot.plot_mp(rand, Q=2.0, fit=fit, savefig=tmp_path / "mp.png")
    check_png(tmp_path / "mp.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(lab.startswith("MP fit: σ") for lab in labels)
    assert any("spike edge" in lab for lab in labels)
    plot.plot_mp(evals, Q=2.0, savefig=tmp_path / "mp2.png")  # fit computed, spikes beyond
    check_png(tmp_path / "mp2.png")


@pytest.mark.slow
def test_plot_layer_writes_every_panel_with_predictable_names(tmp_path, layer):
    _, evals, rand = layer
    figs = plot.plot_layer(
        evals,
        rand_evals=rand,
        Q=2.0,
        name="encoder/layer.0/attn query",
        layer_id=7,
        savefig=tmp_path,
    )
    assert tuple(figs) == plot.PANELS
    stem = "7_encoder_layer.0_attn_query"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{stem}_{panel}.png" for panel in plot.PANELS
    )
    for panel in plot.PANELS:
        check_png(tmp_path / f"{stem}_{panel}.png")


def test_plot_layer_without_optional_panels(layer):
    figs = plot.plot_layer(layer[1])
    assert tuple(figs) == ("esd_loglog", "esd_linlin", "esd_loglin", "pl_candidates")


# ---------------------------------------------------------------------------------------------
# Model-level figures.


def two_models():
    a = details_of(
        [2.5, 3.0, 4.2, 5.1, 3.3], kinds=["conv2d", "conv2d", "dense", "dense", "embedding"]
    )
    b = details_of(
        [3.5, 6.5, 7.0, 4.0, np.nan], kinds=["conv2d", "conv2d", "dense", "dense", "embedding"]
    )
    return xr.concat([a, b], dim="model").assign_coords(model=["good", "bad"])


def test_plot_correlation_flow_one_model(tmp_path):
    details = details_of(
        [1.8, 2.5, 3.0, 4.2, 6.5], kinds=["conv2d", "conv2d", "dense", "dense", "embedding"]
    )
    fig = plot.plot_correlation_flow(details, savefig=tmp_path)
    check_png(tmp_path / "correlation_flow.png", size=(480, 800))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"conv2d", "dense", "embedding"} <= set(labels)
    offsets = np.concatenate(
        [c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets())]
    )
    assert sorted(offsets[:, 1]) == pytest.approx(sorted(details.alpha.values))


def test_plot_correlation_flow_ticks_are_layer_ids():
    # five layers: matplotlib's default locator would put ticks at 0, 0.5, 1, ...
    fig = plot.plot_correlation_flow(details_of([2.5, 3.0, 4.2, 5.1, 3.3]))
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and np.array_equal(ticks, np.round(ticks))


def test_plot_correlation_flow_one_series_per_model_and_epoch(tmp_path):
    fig = plot.plot_correlation_flow(two_models(), savefig=tmp_path / "cf.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "good" in labels and "bad" in labels
    check_png(tmp_path / "cf.png", size=(480, 800))
    epochs = xr.concat([details_of(np.linspace(6, 3, 5) - e / 4) for e in range(12)], "epoch")
    fig = plot.plot_correlation_flow(
        epochs.assign_coords(epoch=np.arange(12)), metric="alpha_weighted"
    )
    assert fig.axes[0].get_ylabel() == "alpha_weighted"


def test_plot_alpha_hist_one_histogram_per_model(tmp_path):
    fig = plot.plot_alpha_hist(two_models(), savefig=tmp_path)
    check_png(tmp_path / "alpha_hist.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("good (mean 3.62, 5 layers)")
    assert labels[1].startswith("bad (mean 5.25, 4 layers)")


@pytest.mark.bad_input
def test_model_plots_reject_bad_details():
    with pytest.raises(InvalidArgumentError, match="no variable 'alpah'"):
        plot.plot_alpha_hist(details_of([3.0]), metric="alpah")
    with pytest.raises(InvalidArgumentError, match="xarray.Dataset"):
        plot.plot_correlation_flow({"alpha": [3.0]})


def test_plot_model_writes_the_model_figures(tmp_path):
    figs = plot.plot_model(two_models(), savefig=tmp_path / "figs")
    assert set(figs) == {"correlation_flow", "alpha_hist"}
    check_png(tmp_path / "figs" / "correlation_flow.png", size=(480, 800))
    check_png(tmp_path / "figs" / "alpha_hist.png")


# ---------------------------------------------------------------------------------------------
# Every layer of a model.


def small_model():
    rng = np.random.default_rng(3)
    return from_layers(
        {
            "features.0": rng.standard_normal((32, 14, 3, 3)),  # conv2d: 9 slices of 32x14
            "classifier/fc1": heavy_tailed(256, 128, seed=4),
            "classifier.fc2": rng.standard_normal((10, 128)),  # 10 eigenvalues
        }
    )


@pytest.mark.slow
def test_plot_layers_without_details_skips_small_layers(tmp_path):
    out = plot.plot_layers(small_model(), savefig=tmp_path)
    # pooled conv: 9 * 14 = 126 eigenvalues >= 50; fc2 has 10 < min_evals
    assert set(out) == {"0_features_0", "1_classifier_fc1"}
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{stem}_{panel}.png" for stem in out for panel in plot.PANELS[:4])
    for path in out["1_classifier_fc1"].values():
        check_png(path)


@pytest.mark.slow
def test_plot_layers_follows_the_details(tmp_path):
    tree = small_model()
    w = dict(rmtkit.iter_layers(tree))["classifier/fc1"].values
    evals = np.asarray(rmtkit.esd(w))
    fit = fit_pl(evals)
    details = details_of(
        [float(fit.alpha)],
        names=["classifier/fc1"],
        xmin=[float(fit.xmin)],
        num_pl_spikes=[int(fit.num_pl_spikes)],
        lambda_max=[float(evals.max())],
        max_rand_eval=[123.0],
        sigma_mp=[0.9],
    ).assign_coords(layer_id=("layer", [1]))
    out = plot.plot_layers(tree, details, savefig=tmp_path, key=jax.random.key(5))
    assert list(out) == ["1_classifier_fc1"]
    assert set(out["1_classifier_fc1"]) == set(plot.PANELS)  # randomized and MP: as analyzed
    for path in out["1_classifier_fc1"].values():
        check_png(path)
    figs = plot.plot_layers(tree, details, randomize=False, mp_fit=False)
    assert set(figs["1_classifier_fc1"]) == set(plot.PANELS[:4])


def test_plot_layers_unpooled_slices():
    out = plot.plot_layers(small_model(), pool=False, min_evals=8, layers=["features/0"])
    assert list(out) == [f"0_features_0_slice{k}" for k in range(9)]


@pytest.mark.bad_input
def test_plot_layers_rejects_details_of_another_model():
    with pytest.raises(InvalidArgumentError, match="not in the weights"):
        plot.plot_layers(small_model(), details_of([3.0], names=["nope"]))


# ---------------------------------------------------------------------------------------------
# Headless, pyplot-free, lazy import.


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.slow
def test_plots_do_not_touch_pyplot_or_the_backend(tmp_path):
    code = (
        "import sys, numpy as np, matplotlib\n"
        "import rmtkit.plot as p\n"
        "fit = dict(alpha=2.5, xmin=100.0, D=0.1)\n"
        f"p.plot_esd(np.arange(1.0, 200.0) ** 2, fit, savefig=r'{tmp_path / 'x.png'}')\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    assert _run(code).split()[-1] == "False"
    check_png(tmp_path / "x.png")


@pytest.mark.slow
def test_missing_matplotlib_names_the_extra():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "try:\n    import rmtkit.plot\nexcept ModuleNotFoundError as e:\n    print(e)\n"
    )
    assert "pip install 'rmtkit[plot]'" in _run(code)


@pytest.mark.slow
def test_plot_model_from_a_real_analysis(tmp_path):
    from rmtkit.analysis import analyze

    layers = dict(rmtkit.iter_layers(small_model()))
    tree = from_layers({name: layers[name].values for name in ("classifier/fc1", "classifier/fc2")})
    details = analyze(tree, randomize=True, progress=False)
    assert list(details.warning.values)[1] == "too-few-evals"
    figs = plot.plot_model(details, savefig=tmp_path, weights=tree)
    assert set(figs["layers"]) == {"0_classifier_fc1"}  # fc2: not fitted, not drawn
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(
        ["alpha_hist.png", "correlation_flow.png"]
        + [f"0_classifier_fc1_{panel}.png" for panel in plot.PANELS if panel != "mp"]
    )
    for path in tmp_path.iterdir():
        check_png(path, size=(480, 800) if path.name == "correlation_flow.png" else SIZE)
    # the randomized ESD drawn is the draw the analysis measured (same keys)
    drawn = rmtkit.spectra(tree, randomize=True, key=jax.random.key(0))
    rand = drawn["rand_evals"].values[0]
    assert rand.max() == pytest.approx(float(details.max_rand_eval[0]), rel=1e-6)
