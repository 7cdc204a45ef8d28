"""rmtkit.WeightWatcher refuses what WeightWatcher 0.7.7 refuses (typed errors instead of a
bare Exception), returns WeightWatcher's types, and transforms a state dict into a state dict."""

import numpy as np
import pytest
from _deps import require

import rmtkit
from rmtkit.errors import InvalidArgumentError
from rmtkit.facade import WeightWatcher

torch = require("torch")


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(40, 60), torch.nn.ReLU(), torch.nn.Linear(60, 30))


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "kw,arg",
    [
        (dict(xmax=0), "xmax"),
        (dict(xmax=3), "xmax"),
        (dict(xmax=-2, fix_fingers="clip_xmax"), "xmax"),
        (dict(max_N=100), "max_N"),
        (dict(min_evals=20, max_evals=10, max_N=100), "min_evals"),
        (dict(fix_fingers="both"), "fix_fingers"),
        (dict(fit="E_TPL", fix_fingers="clip_xmax"), "fit"),
        (dict(fit="lognormal"), "fit"),
        (dict(intra=True, randomize=True), "intra"),
        (dict(inverse=True, vectors=True), "inverse"),
        (dict(conv2d_fft=True, pool=False), "conv2d_fft"),
        (dict(conv2d_fft=True, ww2x=True), "conv2d_fft"),
        (dict(start_ids=-1), "start_ids"),
        (dict(layers=[1, -2]), "layers"),
        (dict(layers=["fc", "-fc2"]), "layers"),
        (dict(xmin_max=1.0), "xmin_max"),
        (dict(max_fingers=3), "max_fingers"),
        (dict(peft="merged"), "peft"),
        (dict(tolerance=-1.0), "tolerance"),
        (dict(randomize="yes"), "randomize"),
    ],
)
def test_weightwatchers_own_rules_are_typed_errors(kw, arg):
    with pytest.raises(InvalidArgumentError, match=arg):
        WeightWatcher(net()).analyze(**kw)


@pytest.mark.slow
def test_types_and_columns():
    w = WeightWatcher(net())
    df = w.analyze(randomize=True, mp_fit=True, detX=True)
    for col in (
        "longname",
        "layer_type",
        "has_esd",
        "sv_max",
        "sv_min",
        "status",
        "num_ERG_spikes",
        "ERG_gap",
        "detX_val_unrescaled",
        "rand_num_spikes",
        "rand_W_scale",
        "rand_bulk_min",
        "kind",
    ):
        assert col in df.columns, col
    assert list(df["layer_id"]) == [1, 3]  # positions in named_modules(), the root being 0
    np.testing.assert_allclose(df["sv_max"], np.sqrt(df["lambda_max"]))
    np.testing.assert_allclose(df["rand_W_scale"], df["W_scale"], rtol=1e-12)  # same ||W||_F
    q = df["Q"].to_numpy()
    ratio = ((1 - q**-0.5) / (1 + q**-0.5)) ** 2
    np.testing.assert_allclose(df["rand_bulk_min"], df["rand_bulk_max"] * ratio)
    assert isinstance(w.get_summary(), dict)


def test_summary_skips_the_rows_weightwatcher_drops():
    w = WeightWatcher(net())
    df = w.analyze(min_evals=35)  # the second Linear has 30 eigenvalues: WW drops it
    assert list(df["warning"])[1] == "too-few-evals" and np.isfinite(df["log_norm"][1])
    assert w.get_summary()["log_norm"] == pytest.approx(df["log_norm"][0])


def test_state_dict_in_state_dict_out():
    sd = net().state_dict()
    out = WeightWatcher().SVDSmoothing(model=sd, method="svd", percent=0.25)
    assert isinstance(out, dict) and set(out) == set(sd)
    assert torch.linalg.matrix_rank(out["0.weight"].double(), atol=1e-5) == 10
    assert torch.equal(out["0.bias"], sd["0.bias"]) and out["0.weight"] is not sd["0.weight"]


def test_bias_distances():
    a, b = net(), net()
    with torch.no_grad():
        b[0].bias.add_(1.0)
    avg_dw, avg_db, details = WeightWatcher().distances(a, b)
    assert avg_dw == 0.0
    assert details["delta_b"].tolist() == pytest.approx([np.sqrt(60.0), 0.0])
    assert details["b_shape"].tolist() == [(60,), (30,)]
    coll = rmtkit.from_layers({"0": a[0].weight.detach().numpy()})
    _, db, d = WeightWatcher().distances(coll, coll)
    assert np.isnan(db) and d["b_shape"].tolist() == ["unknown"]  # a collection has no biases


def test_layers_filter_with_no_match_gives_an_empty_frame():
    df = WeightWatcher(net()).analyze(layers=[42])
    assert len(df) == 0 and list(df.columns) == ["layer_id", "name"]
