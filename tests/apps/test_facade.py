"""rmtkit.WeightWatcher: the WeightWatcher-style facade, returning pandas objects."""

import numpy as np
import pandas as pd
import pytest
from helpers import heavy, require

from rmtkit import data_path
from rmtkit.analysis import analyze, spectra
from rmtkit.collection import from_layers, iter_layers
from rmtkit.errors import InvalidArgumentError
from rmtkit.facade import WeightWatcher


def w(seed):
    """A (100, 64) heavy-tailed layer (helpers.heavy)."""
    return heavy((100, 64), seed)


@pytest.fixture(scope="module")
def watcher():
    require("onnx")  # the embedded model is an ONNX file
    ww = WeightWatcher(model=data_path())
    ww.analyze()
    return ww


def test_analyze_returns_the_details_frame(watcher):
    details = watcher.get_details()
    assert isinstance(details, pd.DataFrame) and len(details) == 5
    assert list(details.columns[:8]) == [
        "layer_id",
        "name",
        "kind",
        "layer_type",
        "N",
        "M",
        "Q",
        "rf",
    ]
    for col in (
        "alpha",
        "alpha_weighted",
        "log_alpha_norm",
        "log_norm",
        "log_spectral_norm",
        "stable_rank",
        "xmin",
        "D",
        "warning",
    ):
        assert col in details.columns
    ref = analyze(data_path(), progress=False)
    np.testing.assert_allclose(details["alpha"], ref.alpha.values)


def test_get_summary(watcher):
    s = watcher.get_summary()
    assert isinstance(s, pd.Series)
    assert set(s.index) == {
        "log_norm",
        "alpha",
        "alpha_weighted",
        "log_alpha_norm",
        "log_spectral_norm",
        "stable_rank",
    }
    assert s["alpha"] == pytest.approx(np.nanmean(watcher.get_details()["alpha"]))
    assert watcher.get_summary(watcher.get_details())["alpha"] == pytest.approx(s["alpha"])


def test_describe_and_get_esd(watcher):
    desc = watcher.describe()
    assert list(desc["name"]) == list(watcher.get_details()["name"])
    esd = watcher.get_ESD(layer=1)  # conv2, pooled x 1/2 like analyze
    assert isinstance(esd, np.ndarray) and esd.size == 144 and (np.diff(esd) >= 0).all()
    assert esd.max() == pytest.approx(watcher.get_details()["lambda_max"][1], rel=1e-12)
    row = spectra(data_path(), layers="fc2").isel(layer=0).values
    np.testing.assert_array_equal(watcher.get_ESD(layer="fc2"), row[~np.isnan(row)])


@pytest.mark.slow
def test_ww_argument_names():
    tree = from_layers({"a": w(0), "b": w(1)})
    ww = WeightWatcher(tree)
    full = ww.analyze(layers=[], min_evals=8, fix_fingers="xmin_peak", detX=True)
    assert len(full) == 2 and "detX_num" in full.columns
    assert len(ww.analyze(layers=[1])) == 1


def test_distances():
    a, b = from_layers({"a": w(0), "b": w(1)}), from_layers({"a": w(0), "b": w(2)})
    ww = WeightWatcher()
    avg, per_layer = ww.distances(a, b)
    assert isinstance(per_layer, pd.DataFrame) and list(per_layer["name"]) == ["a", "b"]
    assert per_layer["delta_W"][0] == 0.0 and per_layer["delta_W"][1] > 0
    assert avg == pytest.approx(per_layer["delta_W"].mean())
    avg_cka, _ = ww.distances(a, a, method="cka")
    assert avg_cka == pytest.approx(1.0)
    with pytest.raises(InvalidArgumentError, match="method"):
        ww.distances(a, b, method="raw")


def test_svd_sharpness_and_smoothing_on_torch():
    torch = require("torch")
    lin = torch.nn.Linear(64, 100)
    weight = w(3)
    weight[7, 11] = 8.0
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(weight))
    model = torch.nn.Sequential(lin)
    ww = WeightWatcher(model)
    sharp = ww.SVDSharpness()
    assert isinstance(sharp, torch.nn.Sequential) and sharp is not model
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), weight)  # input untouched
    s0 = np.linalg.svd(weight, compute_uv=False)[0]
    assert np.linalg.svd(sharp[0].weight.detach().numpy(), compute_uv=False)[0] < 0.5 * s0
    smooth = ww.SVDSmoothing(percent=0.25)
    assert (
        np.linalg.matrix_rank(smooth[0].weight.detach().numpy().astype(np.float64), tol=1e-4) == 16
    )
    coll = WeightWatcher(from_layers({"a": weight})).SVDSharpness()
    assert [p for p, _ in iter_layers(coll)] == ["a"]  # a collection in, a collection out


@pytest.mark.bad_input
def test_no_model():
    with pytest.raises(InvalidArgumentError, match="no model"):
        WeightWatcher().analyze()
    with pytest.raises(InvalidArgumentError, match="analyze"):
        WeightWatcher().get_summary()
