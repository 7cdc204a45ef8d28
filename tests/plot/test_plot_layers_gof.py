"""rmtkit.plot_layers draws each tested layer's goodness-of-fit figures (docs/math.md §12) from
an analyze(gof=True) table: the bootstrap the analysis made (same key, same replicates) and the
tail with the alternatives it fitted, one PNG per layer and figure."""

import numpy as np
import pytest
from _deps import require

require("matplotlib")

import matplotlib.image  # noqa: E402

import rmtkit  # noqa: E402
from rmtkit import plot  # noqa: E402
from rmtkit.collection import from_layers  # noqa: E402

N_BOOT = 40
KEY = 7
GOF_PANELS = ("gof_bootstrap", "gof_tail")
ALTERNATIVES = ("lognormal", "exponential", "stretched_exp", "tpl")


def pareto_layer(n_rows: int, n_cols: int, seed: int) -> np.ndarray:
    """A matrix whose ESD is an exact Pareto sample (alpha 2.5, xmin 1): random orthogonal
    singular vectors, squared singular values drawn from the power law."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n_rows, n_cols)))
    v, _ = np.linalg.qr(rng.standard_normal((n_cols, n_cols)))
    evals = (1.0 - rng.random(n_cols)) ** (-1.0 / 1.5)
    return (u * np.sqrt(evals)) @ v.T


@pytest.fixture(scope="module")
def analysed():
    """A power-law layer, a Gaussian one (Marchenko-Pastur: no power-law tail) and one too
    small to fit, analysed with ``gof=True``."""
    rng = np.random.default_rng(3)
    tree = from_layers(
        {
            "a/pareto": pareto_layer(300, 200, seed=1),
            "b/gauss": rng.standard_normal((400, 200)),
            "c/small": rng.standard_normal((10, 64)),
        }
    )
    details = rmtkit.analyze(tree, gof=True, n_boot=N_BOOT, key=KEY, progress=False)
    return tree, details


def check_png(path):
    assert path.is_file() and path.stat().st_size > 8_000, path
    img = matplotlib.image.imread(path)
    assert img.shape[:2] == (480, 640) and img[..., :3].std() > 0.05


@pytest.mark.slow
def test_the_layers_are_one_of_each_kind(analysed):
    _, details = analysed
    assert list(details.warning.values) == ["", "not-power-law", "too-few-evals"]


@pytest.mark.slow
def test_files_one_per_tested_layer_and_figure(analysed, tmp_path):
    tree, details = analysed
    out = plot.plot_layers(tree, details, savefig=tmp_path, key=KEY)
    assert set(out) == {"0_a_pareto", "1_b_gauss"}  # c/small: not fitted, not drawn
    files = sorted(p.name for p in tmp_path.iterdir())
    expected = [f"{stem}_{panel}.png" for stem in out for panel in plot.PANELS[:4] + GOF_PANELS]
    assert files == sorted(expected)
    for stem in out:
        assert set(GOF_PANELS) <= set(out[stem])
        for panel in GOF_PANELS:
            assert out[stem][panel] == tmp_path / f"{stem}_{panel}.png"
            check_png(out[stem][panel])


@pytest.mark.slow
def test_bootstrap_figure_is_the_analysis_bootstrap(analysed):
    tree, details = analysed
    figs = plot.plot_layers(tree, details, key=KEY)
    for i, stem in enumerate(("0_a_pareto", "1_b_gauss")):
        row = details.isel(layer=i)
        ax = figs[stem]["gof_bootstrap"].axes[0]
        (line,) = ax.get_lines()  # the observed D
        assert line.get_xdata()[0] == pytest.approx(float(row.D), rel=1e-12)
        assert sum(p.get_height() for p in ax.patches) == N_BOOT  # every replicate fitted
        p, se = float(row.pl_pvalue), float(row.pl_pvalue_se)
        assert f"p = {p:.3f} ± {se:.3f}" in ax.get_title()
        assert ("not a power law" in ax.get_title()) == (str(row.warning.values) != "")
        # the histogram is the analysis's bootstrap: the row's p-value is its share >= D
        evals = rmtkit.spectra(tree)[i].values
        boot, _ = rmtkit.layer_gof(evals, layer_id=i, key=KEY, n_boot=N_BOOT)
        heights = [patch.get_height() for patch in ax.patches]
        np.testing.assert_array_equal(heights, np.histogram(boot.D_boot, bins=30)[0])
        assert np.mean(boot.D_boot >= float(row.D)) == p


@pytest.mark.slow
def test_tail_figure_shows_the_rows_tail_and_likelihood_ratios(analysed):
    tree, details = analysed
    figs = plot.plot_layers(tree, details, key=KEY)
    for i, stem in enumerate(("0_a_pareto", "1_b_gauss")):
        row = details.isel(layer=i)
        lines = figs[stem]["gof_tail"].axes[0].get_lines()
        data, models = lines[0], lines[1:]
        assert data.get_xdata().size == int(row.num_pl_spikes)
        assert data.get_xdata().min() == pytest.approx(float(row.xmin), rel=1e-12)
        assert len(models) == 5
        for model, line in zip(ALTERNATIVES, models[1:], strict=True):
            r = float(row[f"R_{model}"])
            assert line.get_label().endswith(f"(R = {r:.2f})")
            assert np.all(np.isfinite(line.get_ydata()))


@pytest.mark.slow
def test_gof_panels_follow_the_switch(analysed):
    tree, details = analysed
    figs = plot.plot_layers(tree, details, gof=False, key=KEY)
    assert not any(set(GOF_PANELS) & set(panels) for panels in figs.values())
    plain = plot.plot_layers(tree, details.drop_vars("pl_pvalue"), key=KEY)  # not analysed
    assert not any(set(GOF_PANELS) & set(panels) for panels in plain.values())
    mine = plot.plot_layers(tree, gof=True, n_boot=8, layers=["a/pareto"], key=KEY)
    ax = mine["0_a_pareto"]["gof_bootstrap"].axes[0]
    assert sum(p.get_height() for p in ax.patches) == 8
