"""Walk WeightWatcher 0.7.7's whole public signature (tests/reference/ww077_signature.json,
read from the installed package with inspect by make_ww_options_reference.py): the facade has
every argument with WeightWatcher's default, and each one is either honoured (a non-default
value changes what it should) or refused with a typed error naming it; none is ignored. An
unknown keyword is a TypeError, as in WeightWatcher."""

import inspect
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _deps import require

import rmtkit
from rmtkit.errors import InvalidArgumentError
from rmtkit.facade import WeightWatcher

torch = require("torch")
nn = torch.nn

REF = Path(__file__).resolve().parents[1] / "reference"
SIGNATURE = json.loads((REF / "ww077_signature.json").read_text())["methods"]
#: keyword-only additions of the facade (rmtkit's, not WeightWatcher's)
EXTRAS = {"key"}


class Net(nn.Module):
    """conv (8, 4, 3, 3): 36 eigenvalues; fc1 40 -> 60 and fc2 60 -> 30 chain."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(4, 8, 3)
        self.fc1 = nn.Linear(40, 60)
        self.fc2 = nn.Linear(60, 30)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            for p in self.parameters():
                p.copy_(0.1 * torch.distributions.StudentT(3.0).sample(p.shape))
            del g


@pytest.fixture(scope="module")
def net():
    return Net(0)


def ww(net):
    return WeightWatcher(net)


def rows(df):
    return {r["name"]: r for _, r in df.iterrows()}


def refused(call, arg):
    with pytest.raises(InvalidArgumentError, match=arg):
        call()


# ------------------------------------------------------------------------------ signature
@pytest.mark.parametrize("method", sorted(SIGNATURE))
def test_signature_is_weightwatchers(method):
    ours = inspect.signature(getattr(WeightWatcher, method)).parameters
    mine = [p for name, p in ours.items() if name != "self" and name not in EXTRAS]
    theirs = SIGNATURE[method]
    assert [p.name for p in mine] == [p["name"] for p in theirs]
    for p, q in zip(mine, theirs, strict=True):
        assert (p.default is not inspect.Parameter.empty) == q["has_default"], p.name
        if q["has_default"]:
            assert repr(p.default) == q["default"], (method, p.name)
    for name in EXTRAS & set(ours):
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.bad_input
@pytest.mark.parametrize("method", sorted(SIGNATURE))
def test_unknown_keyword_is_a_type_error(method, net):
    target = WeightWatcher if method == "__init__" else getattr(ww(net), method)
    with pytest.raises(TypeError, match="min_eval"):
        target(min_eval=100)


# ------------------------------------------------------------------------------ checks
def _lora_folder(tmp_path, net):
    st = require("safetensors.numpy")
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 4}))
    rng = np.random.default_rng(0)
    st.save_file(
        {
            "base_model.model.fc1.lora_A.weight": rng.standard_normal((4, 40)).astype(np.float32),
            "base_model.model.fc1.lora_B.weight": rng.standard_normal((60, 4)).astype(np.float32),
        },
        str(folder / "adapter_model.safetensors"),
    )
    return str(folder)


def a_model(net, tmp):
    out = WeightWatcher().analyze(model=net)
    assert list(out["name"]) == ["conv", "fc1", "fc2"]


def a_layers(net, tmp):
    ids = dict(zip(ww(net).analyze()["name"], ww(net).analyze()["layer_id"]))
    assert list(ww(net).analyze(layers=[ids["fc1"]])["name"]) == ["fc1"]
    assert list(ww(net).analyze(layers=[-ids["fc1"]])["name"]) == ["conv", "fc2"]
    assert list(ww(net).analyze(layers=["-fc1"])["name"]) == ["conv", "fc2"]
    assert list(ww(net).analyze(layers="dense")["name"]) == ["fc1", "fc2"]


def a_min_evals(net, tmp):
    r = rows(ww(net).analyze(min_evals=37))
    assert r["conv"]["warning"] == "too-few-evals" and r["fc1"]["warning"] != "too-few-evals"


def a_max_evals(net, tmp):
    r = rows(ww(net).analyze(max_evals=37, max_N=100))
    assert r["fc1"]["warning"] == "too-many-evals" and np.isfinite(r["conv"]["alpha"])


def a_max_n(net, tmp):
    assert "fc1" not in rows(ww(net).analyze(max_evals=50, max_N=59))  # fc1 has N = 60
    refused(lambda: ww(net).analyze(max_N=100), "max_N")  # below max_evals: WW refuses


def a_plot(net, tmp):
    w = ww(net)
    w.analyze(plot=True, savefig=str(tmp / "figs"))
    files = sorted(p.name for p in (tmp / "figs").iterdir())
    assert any(f.endswith("_fc1_esd_loglog.png") for f in files) and w.figures


def a_savefig(net, tmp):
    w = ww(net)
    w.analyze(plot=True, savefig=False)  # figures in memory, no file
    assert w.figures and all(
        hasattr(f, "savefig") for panels in w.figures.values() for f in panels.values()
    )
    w.analyze(plot=True, savefig=str(tmp / "other"))
    assert any((tmp / "other").iterdir())
    refused(lambda: ww(net).analyze(savefig=3), "savefig")


def a_randomize(net, tmp):
    assert "rand_distance" in ww(net).analyze(randomize=True)


def a_mp_fit(net, tmp):
    assert "sigma_mp" in ww(net).analyze(mp_fit=True)


def a_conv2d_norm(net, tmp):
    a, b = rows(ww(net).analyze()), rows(ww(net).analyze(conv2d_norm=False))
    assert b["conv"]["lambda_max"] == pytest.approx(2 * a["conv"]["lambda_max"])


def a_ww2x(net, tmp):
    assert (ww(net).analyze(ww2x=True)["name"] == "conv").sum() == 9


def a_pool(net, tmp):
    assert (ww(net).analyze(pool=False)["name"] == "conv").sum() == 9


def a_conv2d_fft(net, tmp):
    assert rows(ww(net).analyze(conv2d_fft=True))["conv"]["num_evals"] == 4 * 1024


def a_deltas(net, tmp):
    assert "mean_spacing_ratio" in ww(net).analyze(deltas=True)


def a_intra(net, tmp):
    assert list(ww(net).analyze(intra=True)["longname"]) == [f"{i} X {i + 1}" for i in (2,)]


def a_vectors(net, tmp):
    assert "bulk_mean_loc_ratio" in ww(net).analyze(vectors=True)


def a_stacked(net, tmp):
    assert list(ww(net).analyze(stacked=True)["name"]) == ["stacked"]


def a_fix_fingers(net, tmp):
    assert "num_fingers" in ww(net).analyze(fix_fingers="clip_xmax")
    w = ww(net)
    w.analyze(fix_fingers="xmin_peak")
    assert w.results.attrs["xmin_method"] == "peak"


def a_xmin_max(net, tmp):
    w = ww(net)
    w.analyze(fix_fingers="xmin_peak", xmin_max=0.5)
    assert w.results.attrs["xmin_max"] == 0.5


def a_max_fingers(net, tmp):
    w = ww(net)
    w.analyze(fix_fingers="clip_xmax", max_fingers=3)
    assert w.results.attrs["max_fingers"] == 3


def a_finger_thresh(net, tmp):
    w = ww(net)
    w.analyze(fix_fingers="clip_xmax", finger_thresh=0.25)
    assert w.results.attrs["finger_thresh"] == 0.25


def a_fit(net, tmp):
    assert "Lambda" in ww(net).analyze(fit="TPL")


def a_sparsify(net, tmp):
    a = ww(net).analyze(intra=True, sparsify=True)["norm"][0]
    b = ww(net).analyze(intra=True, sparsify=False)["norm"][0]
    assert a != b


def a_detx(net, tmp):
    assert "detX_num" in ww(net).analyze(detX=True)


def a_erg(net, tmp):
    assert "ERG_gap" in ww(net).analyze(ERG=True)


def a_svd_method(net, tmp):
    a = ww(net).analyze()["alpha"]
    np.testing.assert_array_equal(ww(net).analyze(svd_method="accurate")["alpha"], a)
    refused(lambda: ww(net).analyze(svd_method="bogus"), "svd_method")


def a_tolerance(net, tmp):
    a, b = ww(net).analyze(), ww(net).analyze(tolerance=0.05)
    assert (b["weak_rank_loss"] > a["weak_rank_loss"]).any()


def a_start_ids(net, tmp):
    a, b = ww(net).analyze(), ww(net).analyze(start_ids=1)
    np.testing.assert_array_equal(b["layer_id"], a["layer_id"] + 1)


def a_pl_package(net, tmp):
    assert len(ww(net).analyze(pl_package="ww")) == 3
    refused(lambda: ww(net).analyze(pl_package="powerlaw"), "pl_package")


def a_xmax(net, tmp):
    a, b = rows(ww(net).analyze()), rows(ww(net).analyze(xmax=-2))
    assert b["fc1"]["xmax"] < a["fc1"]["xmax"]


def a_base_model(net, tmp):
    other = Net(1)
    r = rows(WeightWatcher(net).analyze(base_model=other))
    d = (net.fc1.weight - other.fc1.weight).detach().double().numpy()
    assert r["fc1"]["norm"] == pytest.approx(np.sum(d**2), rel=1e-6)


def a_peft(net, tmp):
    folder = _lora_folder(tmp, net)
    out = WeightWatcher(folder).analyze(peft=True, base_model=net)
    assert list(out["name"]) == ["fc1"]
    both = WeightWatcher(folder).analyze(peft="with_base", base_model=net)
    assert "fc1/lora_W_plus_AB" in set(both["name"])
    refused(lambda: ww(net).analyze(peft=True), "peft")


def a_inverse(net, tmp):
    e = ww(net).get_ESD(layer="fc1")
    assert rows(ww(net).analyze(inverse=True))["fc1"]["lambda_max"] == pytest.approx(1 / e.min())


ANALYZE = {
    "model": a_model,
    "layers": a_layers,
    "min_evals": a_min_evals,
    "max_evals": a_max_evals,
    "min_size": "refused",
    "max_size": "refused",
    "max_N": a_max_n,
    "glorot_fix": "refused",
    "plot": a_plot,
    "randomize": a_randomize,
    "savefig": a_savefig,
    "mp_fit": a_mp_fit,
    "conv2d_norm": a_conv2d_norm,
    "ww2x": a_ww2x,
    "pool": a_pool,
    "conv2d_fft": a_conv2d_fft,
    "fft": "refused",
    "deltas": a_deltas,
    "intra": a_intra,
    "vectors": a_vectors,
    "channels": "refused",
    "stacked": a_stacked,
    "fix_fingers": a_fix_fingers,
    "xmin_max": a_xmin_max,
    "max_fingers": a_max_fingers,
    "finger_thresh": a_finger_thresh,
    "fit": a_fit,
    "sparsify": a_sparsify,
    "detX": a_detx,
    "ERG": a_erg,
    "svd_method": a_svd_method,
    "tolerance": a_tolerance,
    "start_ids": a_start_ids,
    "pl_package": a_pl_package,
    "xmax": a_xmax,
    "base_model": a_base_model,
    "peft": a_peft,
    "inverse": a_inverse,
}
#: the value each refused argument is refused with (its default passes)
REFUSED = {
    "min_size": 10,
    "max_size": 10,
    "glorot_fix": True,
    "fft": True,
    "channels": "first",
    "svd_method": "bogus",
    "pl_package": "powerlaw",
    "savefig": 7,
    "conv2d_norm": False,
    "params": {},
    "plot": True,
    "pool": False,
}


def d_basic(arg, value, check):
    def run(net, tmp):
        check(ww(net).describe(**{arg: value}), ww(net).describe())

    return run


DESCRIBE = {
    "model": lambda net, tmp: WeightWatcher().describe(model=net).shape[0] == 3,
    "layers": d_basic("layers", ["fc2"], lambda a, b: list(a["name"]) == ["fc2"] or pytest.fail()),
    "min_evals": d_basic(
        "min_evals", 37, lambda a, b: rows(a)["conv"]["warning"] == "too-few-evals" or pytest.fail()
    ),
    "max_evals": lambda net, tmp: (
        rows(ww(net).describe(max_evals=37, max_N=100))["fc1"]["warning"] == "too-many-evals"
        or pytest.fail()
    ),
    "min_size": "refused",
    "max_size": "refused",
    "max_N": lambda net, tmp: (
        "fc1" not in rows(ww(net).describe(max_evals=50, max_N=59)) or pytest.fail()
    ),
    "glorot_fix": "refused",
    "savefig": "refused",
    "ww2x": d_basic("ww2x", True, lambda a, b: len(a) == 11 or pytest.fail()),
    "pool": d_basic("pool", False, lambda a, b: len(a) == 11 or pytest.fail()),
    "conv2d_fft": d_basic(
        "conv2d_fft", True, lambda a, b: rows(a)["conv"]["num_evals"] == 4096 or pytest.fail()
    ),
    "fft": "refused",
    "conv2d_norm": "refused",
    "intra": d_basic("intra", True, lambda a, b: list(a["name"]) == ["fc1.X.fc2"] or pytest.fail()),
    "channels": "refused",
    "stacked": d_basic(
        "stacked", True, lambda a, b: list(a["name"]) == ["stacked"] or pytest.fail()
    ),
    "start_ids": d_basic(
        "start_ids", 2, lambda a, b: (a["layer_id"] == b["layer_id"] + 2).all() or pytest.fail()
    ),
    "base_model": lambda net, tmp: (
        set(ww(net).describe(base_model=rmtkit.from_layers({"fc1": np.ones((60, 40))}))["warning"])
        == {"no-base-layer", ""}
        or pytest.fail()
    ),
    "peft": lambda net, tmp: (
        list(WeightWatcher(_lora_folder(tmp, net)).describe(peft=True, base_model=net)["name"])
        == ["fc1"]
        or pytest.fail()
    ),
}


def g_esd_random(net, tmp):
    e, r = ww(net).get_ESD(layer="fc1"), ww(net).get_ESD(layer="fc1", random=True)
    assert not np.allclose(e, r) and r.sum() == pytest.approx(e.sum())


def g_weights_layer(net, tmp):
    assert [m.shape for m in ww(net).get_Weights(layer="conv")] == [(8, 4)] * 9
    assert ww(net).get_Weights(layer="fc1")[0].shape == (60, 40)


def dist(net, **kw):
    return WeightWatcher().distances(net, Net(1), **kw)


def dist_methods(net, tmp):
    values = {m: dist(net, method=m)[0] for m in ("raw", "euclidean", "cka")}
    assert len(set(values.values())) == 3 and 0 < values["cka"] < 1


def dist_layers(net, tmp):
    assert list(dist(net, layers=["fc2"])[2]["name"]) == ["fc2"]


def dist_start_ids(net, tmp):
    np.testing.assert_array_equal(dist(net, start_ids=3)[2].index, dist(net)[2].index + 3)


def dist_pool(net, tmp):
    assert "slice_id" in dist(net, method="euclidean", pool=False)[2]


def sharpen_layers(net, tmp):
    out = ww(net).SVDSharpness(layers=["fc2"], key=1)
    assert torch.equal(out.fc1.weight, net.fc1.weight) and out is not net


def sharpen_plot(net, tmp):
    w = ww(net)
    w.SVDSharpness(plot=True)
    assert any("randomized" in fig for fig in w.figures.values())


def sharpen_start_ids(net, tmp):
    ids = dict(zip(ww(net).describe()["name"], ww(net).describe()["layer_id"]))
    a = ww(net).SVDSharpness(layers=[ids["fc1"]])
    b = ww(net).SVDSharpness(layers=[ids["fc1"] + 1], start_ids=1)
    assert torch.equal(a.fc1.weight, b.fc1.weight)


def smooth(net, **kw):
    return ww(net).SVDSmoothing(**kw)


def rank(layer):
    return int(np.linalg.matrix_rank(layer.weight.detach().double().numpy(), tol=1e-5))


def smooth_percent(net, tmp):
    assert rank(smooth(net, method="svd", percent=0.25).fc1) == 10
    out = smooth(net, method="svd", percent=-0.25)  # drop the top 10, keep the smallest
    s, s0 = (
        np.linalg.svd(m.fc1.weight.detach().double().numpy(), compute_uv=False) for m in (out, net)
    )
    np.testing.assert_allclose(s[:30], s0[10:], rtol=1e-5)


def smooth_methods(net, tmp):
    ranks = {
        m: rank(smooth(net, method=m).fc1) for m in ("detX", "svd", "alpha_min", "rmt", "auto")
    }
    assert ranks["svd"] == 32 and len(set(ranks.values())) > 1


def smooth_layers(net, tmp):
    out = smooth(net, layers=["fc2"])
    assert torch.equal(out.fc1.weight, net.fc1.weight) and rank(out.fc2) < 30


def smooth_fit(net, tmp):
    """alpha_min keeps the tail size of the fit asked for: the TPL fit's, not the PL fit's."""
    out = smooth(net, method="alpha_min", fit="TPL", layers=["fc1"])
    tpl = rmtkit.analyze(net, layers="fc1", fit="TPL", min_evals=0, progress=False)
    assert rank(out.fc1) == int(tpl.num_pl_spikes[0])
    refused(lambda: smooth(net, fit="TPL"), "fit")  # only used by alpha_min


def smooth_start_ids(net, tmp):
    ids = dict(zip(ww(net).describe()["name"], ww(net).describe()["layer_id"]))
    a = smooth(net, layers=[ids["fc2"]])
    b = smooth(net, layers=[ids["fc2"] + 1], start_ids=1)
    assert torch.equal(a.fc2.weight, b.fc2.weight)


def smooth_svd_method(net, tmp):
    a, b = smooth(net), smooth(net, svd_method="accurate")
    assert torch.equal(a.fc1.weight, b.fc1.weight)


def init_framework(net, tmp):
    assert len(WeightWatcher(net, framework="pytorch").analyze()) == 3
    refused(lambda: WeightWatcher(net, framework="onnx"), "framework")
    refused(lambda: WeightWatcher(net, framework="caffe"), "framework")


def init_base(net, tmp):
    other = Net(1)
    a = WeightWatcher(net, base_model=other).analyze()
    assert a["norm"][1] == pytest.approx(WeightWatcher(net).analyze(base_model=other)["norm"][1])


def init_log_level(net, tmp):
    WeightWatcher(net, log_level=logging.ERROR)
    assert logging.getLogger("rmtkit").level == logging.ERROR
    WeightWatcher(net, log_level="WARNING")
    assert logging.getLogger("rmtkit").level == logging.WARNING


def summary_details(net, tmp):
    w = ww(net)
    df = w.analyze()
    other = ww(net)
    other.analyze(layers=["fc1"])
    assert other.get_summary(details=df) == w.get_summary()


CHECKS = {
    "__init__": {
        "model": lambda net, tmp: WeightWatcher(net).model is net or pytest.fail(),
        "framework": init_framework,
        "base_model": init_base,
        "log_level": init_log_level,
    },
    "analyze": ANALYZE,
    "describe": DESCRIBE,
    "get_details": {},
    "get_summary": {"details": summary_details},
    "get_ESD": {
        "model": lambda net, tmp: WeightWatcher().get_ESD(model=net).size == 36 or pytest.fail(),
        "layer": lambda net, tmp: ww(net).get_ESD(layer="fc1").size == 40 or pytest.fail(),
        "random": g_esd_random,
        "params": "refused",
    },
    "get_Weights": {
        "model": lambda net, tmp: len(WeightWatcher().get_Weights(model=net)) == 9 or pytest.fail(),
        "layer": g_weights_layer,
        "params": "refused",
    },
    "distances": {
        "model_1": lambda net, tmp: dist(net)[2].shape[0] == 3 or pytest.fail(),
        "model_2": lambda net, tmp: WeightWatcher().distances(net, net)[0] == 0.0 or pytest.fail(),
        "method": dist_methods,
        "layers": dist_layers,
        "start_ids": dist_start_ids,
        "pool": dist_pool,
        "channels": "refused",
    },
    "SVDSharpness": {
        "model": lambda net, tmp: (
            isinstance(WeightWatcher().SVDSharpness(model=net), Net) or pytest.fail()
        ),
        "pool": "refused",
        "layers": sharpen_layers,
        "plot": sharpen_plot,
        "start_ids": sharpen_start_ids,
    },
    "SVDSmoothing": {
        "model": lambda net, tmp: (
            isinstance(WeightWatcher().SVDSmoothing(model=net), Net) or pytest.fail()
        ),
        "percent": smooth_percent,
        "pool": "refused",
        "layers": smooth_layers,
        "method": smooth_methods,
        "fit": smooth_fit,
        "plot": "refused",
        "start_ids": smooth_start_ids,
        "svd_method": smooth_svd_method,
    },
}

CASES = [(m, p["name"]) for m, params in SIGNATURE.items() for p in params]


def test_every_argument_has_a_check():
    missing = [(m, a) for m, a in CASES if a not in CHECKS[m]]
    assert not missing, f"WeightWatcher arguments neither honoured nor refused here: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("method,arg", CASES)
def test_argument_is_honoured_or_refused(method, arg, net, tmp_path):
    check = CHECKS[method][arg]
    if check == "refused":
        value = REFUSED[arg]
        if method == "__init__":
            call = lambda: WeightWatcher(net, **{arg: value})  # noqa: E731
        else:
            args = (net, net) if method == "distances" else ()
            call = lambda: getattr(ww(net), method)(*args, **{arg: value})  # noqa: E731
        refused(call, arg)
        return
    check(net, tmp_path)


def test_get_details_is_the_last_analysis(net):
    w = ww(net)
    assert w.get_details() is None
    df = w.analyze()
    assert w.get_details() is df and isinstance(df, pd.DataFrame)
