"""rmtkit.analyze / describe / spectra / summary / concat on collections and real models.

Shapes are small, so every spectrum falls in the smallest analysis bucket (``MIN_BUCKET``, 256)
that the embedded model and the WeightWatcher reference already compile (the jitted kernels are
cached at module level), which keeps this file fast.
"""

import json

import jax
import numpy as np
import pytest
import xarray as xr
from helpers import REF, digits_net, heavy, onnx_export, require

from rmtkit import data_path
from rmtkit._engine.host import host_esd
from rmtkit.analysis import (
    analyze,
    analyze_many,
    concat,
    describe,
    model_distances,
    select_layers,
    spectra,
    summary,
)
from rmtkit.collection import LazyArray, build_tree, from_layers, weight_node
from rmtkit.errors import InvalidArgumentError

BASE_VARS = [
    "alpha",
    "xmin",
    "xmax",
    "D",
    "sigma",
    "num_pl_spikes",
    "num_evals",
    "alpha_weighted",
    "log_alpha_norm",
    "lambda_max",
    "spectral_norm",
    "norm",
    "log_norm",
    "log_spectral_norm",
    "stable_rank",
    "entropy",
    "matrix_rank",
    "rank_loss",
    "weak_rank_loss",
    "warning",
]
COORDS = {"name", "kind", "layer_id", "N", "M", "Q", "rf"}


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def embedded():
    """The analysis of the embedded model (rmtkit.data_path(), an ONNX file)."""
    require("onnx")
    return analyze(data_path(), progress=False)


# --------------------------------------------------------------------------- schema


def test_schema_on_the_embedded_model(embedded):
    d = embedded
    assert isinstance(d, xr.Dataset) and list(d.dims) == ["layer"]
    assert COORDS <= set(d.coords) and "slice_id" not in d.coords
    assert list(d.data_vars) == BASE_VARS
    for v in BASE_VARS[:-1]:
        assert d[v].dtype == np.float64, v
    assert d["layer_id"].dtype == np.int64 and d["N"].dtype == np.int64
    assert list(d["name"].values) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert list(d["kind"].values) == ["conv2d", "conv2d", "dense", "dense", "dense"]
    np.testing.assert_allclose(d.Q, d.N / d.M)
    assert list(d.rf.values) == [9, 9, 1, 1, 1]
    warn = dict(zip(d["name"].values, d["warning"].values))
    assert warn["conv1"] == warn["fc3"] == "too-few-evals"  # 9 and 10 eigenvalues < 50
    assert np.isnan(d.alpha.values[[0, 4]]).all() and np.isfinite(d.alpha.values[1:4]).all()
    # too-few-evals rows keep their scale metrics, not the alpha-based ones
    assert np.isfinite(d.log_norm.values).all() and np.isnan(d.alpha_weighted.values[0])
    np.testing.assert_array_equal(d.spectral_norm, d.lambda_max)
    np.testing.assert_allclose(d.alpha_weighted[1:4], d.alpha[1:4] * d.log_spectral_norm[1:4])
    assert d.attrs["fit"] == "PL" and d.attrs["min_evals"] == 50 and d.attrs["pool"] == "True"
    df = d.to_dataframe()
    assert {"alpha", "alpha_weighted", "log_alpha_norm", "name", "warning"} <= set(df.columns)


def test_describe_is_analyze_without_reading(embedded):
    def boom():
        raise AssertionError("describe read a weight")

    tree = build_tree(
        [
            ("a", weight_node(LazyArray(boom, (100, 64), np.float32), kind="dense")),
            (
                "b",
                weight_node(LazyArray(boom, (8, 4, 3, 3), np.float32), kind="conv2d", layer_id=1),
            ),
        ]
    )
    d = describe(tree)
    assert list(d.num_evals.values) == [64.0, 36.0]
    assert list(d.warning.values) == ["", "too-few-evals"]
    emb = describe(data_path())
    for c in COORDS:
        np.testing.assert_array_equal(emb[c].values, embedded[c].values)
    np.testing.assert_array_equal(emb.num_evals, embedded.num_evals)
    assert describe(data_path(), pool=False).sizes["layer"] == 9 + 9 + 3


def test_spectra_are_what_analyze_fits(embedded):
    da = spectra(data_path())
    assert da.dims == ("layer", "eval") and da.sizes["eval"] == 144
    for c in COORDS:
        np.testing.assert_array_equal(da[c].values, embedded[c].values)
    counts = da.notnull().sum("eval")
    np.testing.assert_array_equal(counts, embedded.num_evals)
    np.testing.assert_allclose(da.max("eval"), embedded.lambda_max, rtol=1e-12)
    np.testing.assert_allclose(da.sum("eval"), embedded.norm, rtol=1e-12)
    from rmtkit import load
    from rmtkit.collection import iter_layers

    for i, (_, w) in enumerate(iter_layers(load(data_path()))):
        row = da.isel(layer=i).values
        np.testing.assert_array_equal(row[~np.isnan(row)], host_esd(w.values))


# --------------------------------------------------------------------------- bad layers


def test_bad_layers_never_raise():
    good = heavy((100, 64))
    nan = good.copy()
    nan[3, 4] = np.nan
    layers = {
        "good": good,
        "nan": nan,
        "inf": np.full((100, 64), np.inf, np.float32),
        "zero": np.zeros((100, 64), np.float32),
        "tiny": heavy((30, 20), 1),
        "huge": heavy((300, 200), 2),
        "rank1": np.outer(np.arange(1.0, 101), np.ones(64)),
    }
    d = analyze(from_layers(layers), max_evals=150, progress=False)
    warn = dict(zip(d["name"].values, d["warning"].values))
    assert warn["nan"] == warn["inf"] == "non-finite-weights"
    assert warn["zero"] == "all-zero" and warn["tiny"] == "too-few-evals"
    assert warn["huge"] == "too-many-evals"
    assert warn["good"] in ("", "over-trained", "under-trained")
    assert warn["rank1"] == "rank-deficient"  # rank 1 < min_evals (test_bad_layers.py)
    by = {n: i for i, n in enumerate(d["name"].values)}
    for name in ("nan", "inf", "zero", "huge"):
        row = d.isel(layer=by[name])
        assert np.isnan(row.alpha) and np.isnan(row.log_norm)
        assert int(row.N) > 0 and float(row.num_evals) > 0  # sizes still reported
    assert float(d.isel(layer=by["huge"]).num_evals) == 200
    tiny = d.isel(layer=by["tiny"])
    assert np.isnan(tiny.alpha) and np.isfinite(tiny.log_norm) and np.isfinite(tiny.stable_rank)
    rank1 = d.isel(layer=by["rank1"])
    assert np.isnan(rank1.alpha) and float(rank1.matrix_rank) == 1.0
    assert np.isfinite(rank1.log_norm) and np.isnan(rank1.num_pl_spikes)
    s = summary(d)
    assert np.isfinite(float(s.alpha)) and np.isfinite(float(s.log_norm))


def test_unreadable_layer_is_a_warning_row():
    def broken():
        raise OSError("disk on fire")

    tree = build_tree(
        [
            ("ok", weight_node(heavy((100, 64)), kind="dense")),
            (
                "bad",
                weight_node(LazyArray(broken, (100, 64), np.float32), kind="dense", layer_id=1),
            ),
        ]
    )
    d = analyze(tree, progress=False)
    assert d.warning.values[1] == "read-failed: disk on fire"
    assert np.isnan(d.alpha.values[1]) and np.isfinite(d.alpha.values[0])


def test_layers_stream_one_read_each():
    reads = []

    def loader(name, a):
        def load():
            reads.append(name)
            return a

        return LazyArray(load, a.shape, a.dtype)

    nodes = [
        (f"l{i}", weight_node(loader(f"l{i}", heavy((100, 64), i)), kind="dense", layer_id=i))
        for i in range(3)
    ]
    nodes.append(("big", weight_node(loader("big", heavy((300, 200))), kind="dense", layer_id=3)))
    analyze(build_tree(nodes), max_evals=100, progress=False)
    assert reads == ["l0", "l1", "l2"]  # each once, in order; the skipped layer never


# --------------------------------------------------------------------------- layer selection


@pytest.fixture(scope="module")
def four():
    return from_layers(
        {
            "enc.a": heavy((100, 64)),
            "enc.b": heavy((100, 64), 1),
            "dec.a": heavy((100, 64), 2),
            "conv": rng(3).normal(size=(8, 4, 3, 3)).astype(np.float32),
        }
    )


@pytest.mark.parametrize(
    "layers, want",
    [
        (None, ["enc/a", "enc/b", "dec/a", "conv"]),
        (1, ["enc/b"]),
        ([0, 2], ["enc/a", "dec/a"]),
        ("conv2d", ["conv"]),
        ("dense", ["enc/a", "enc/b", "dec/a"]),
        ("enc", ["enc/a", "enc/b"]),
        ("enc.b", ["enc/b"]),
        ("*/a", ["enc/a", "dec/a"]),
        ("enc.*", ["enc/a", "enc/b"]),
        (["!enc"], ["dec/a", "conv"]),
        ([0, "conv2d"], ["enc/a", "conv"]),
        ([-1], ["enc/a", "dec/a", "conv"]),
        ({"include": ["dense"], "exclude": ["*/b", 2]}, ["enc/a"]),
    ],
)
def test_select_layers(four, layers, want):
    assert [p for p, _ in select_layers(four, layers)] == want


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "layers, match",
    [
        (1.5, "must be an int, a str"),
        ([None], "entries must be"),
        ([""], "empty"),
        ({"only": [1]}, "'include' and 'exclude'"),
        ({"include": [-1]}, "negative"),
        ("nothing*", "selects no layer"),
        (99, "selects no layer"),
    ],
)
def test_bad_layer_filters(layers, match):
    def boom():
        raise AssertionError("read a weight")

    tree = build_tree([("a", weight_node(LazyArray(boom, (100, 64), np.float32), kind="dense"))])
    with pytest.raises(InvalidArgumentError, match=match):
        analyze(tree, layers=layers, progress=False)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(fit="XX"), "`fit` must be one of"),
        (dict(min_evals=60, max_evals=50), "smaller than `min_evals`"),
        (dict(min_evals=-1), "`min_evals`"),
        (dict(max_evals=0), "`max_evals`"),
        (dict(pool="yes"), "`pool`"),
        (dict(xmax=3), "`xmax`"),
        (dict(xmin_method="nope"), "`xmin_method`"),
        (dict(fix_fingers="nope"), "`fix_fingers`"),
        (dict(fit="TPL", fix_fingers="clip_xmax"), "fit='PL' only"),
        (dict(lora="both"), "`lora`"),
        (dict(randomize=True, key="abc"), "`key`"),
    ],
)
def test_invalid_arguments_fail_before_work(kw, match):
    def boom():
        raise AssertionError("read a weight")

    tree = build_tree([("a", weight_node(LazyArray(boom, (100, 64), np.float32), kind="dense"))])
    with pytest.raises(InvalidArgumentError, match=match):
        analyze(tree, progress=False, **kw)


# --------------------------------------------------------------------------- options


def test_pool_false_rows_per_slice():
    w = rng(4).normal(size=(64, 60, 2, 2)).astype(np.float32)
    pooled = analyze(from_layers({"c": w}), progress=False)
    d = analyze(from_layers({"c": w, "fc": heavy((100, 64))}), pool=False, progress=False)
    assert list(d.slice_id.values) == [0, 1, 2, 3, 0]
    assert list(d["name"].values) == ["c"] * 4 + ["fc"]
    assert (d.M.values[:4] == 60).all() and (d.num_evals.values[:4] == 60).all()
    host = host_esd(w, pool=False)
    np.testing.assert_allclose(d.lambda_max.values[:4], host.max(1), rtol=1e-12)
    assert pooled.num_evals.item() == 240
    np.testing.assert_allclose(pooled.lambda_max.item(), host.max() / 4, rtol=1e-12)  # 2 vs 1/2


@pytest.mark.slow
def test_randomize_mp_fit_detx_are_reproducible():
    w = heavy((100, 64), 5)
    w[7, 11] = 40.0  # a correlation trap
    tree = from_layers({"fc": w})
    kw = dict(randomize=True, mp_fit=True, detx=True, progress=False)
    a = analyze(tree, **kw)
    b = analyze(tree, key=jax.random.key(0), **kw)
    c = analyze(tree, key=3, **kw)
    for v in (
        "rand_distance",
        "max_rand_eval",
        "ww_softrank",
        "ww_maxdist",
        "num_traps",
        "rand_sigma_mp",
        "rand_mp_softrank",
        "rand_bulk_max",
        "sigma_mp",
        "bulk_min",
        "bulk_max",
        "num_spikes",
        "mp_softrank",
        "W_scale",
        "detX_num",
        "detX_val",
    ):
        assert v in a.data_vars and np.isfinite(a[v].values).all(), v
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.max_rand_eval.item() != c.max_rand_eval.item()
    assert a.num_traps.item() >= 1 and 0 <= a.rand_distance.item() <= np.sqrt(np.log(2))
    assert a.attrs["randomize"] == "True" and a.attrs["key"] == "jax.random.key(0)"


@pytest.mark.slow
def test_tpl_fit_adds_lambda():
    d = analyze(from_layers({"fc": heavy((100, 64), 6)}), fit="TPL", progress=False)
    assert "Lambda" in d and np.isfinite(d.alpha.item()) and d.Lambda.item() >= 0
    assert d.attrs["fit"] == "TPL"


def test_progress_bar_on_stderr(capsys):
    tree = from_layers({"fc": heavy((100, 64))})
    analyze(tree, progress=False)
    assert capsys.readouterr().err == ""
    analyze(tree, progress=True)  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
    analyze(tree, progress="always")
    err = capsys.readouterr().err
    assert "analyze" in err and "1/1" in err and err.endswith("\n")


# --------------------------------------------------------------------------- several models


def test_summary_ignores_nan_and_keeps_other_dims(embedded):
    s = summary(embedded)
    assert set(s.data_vars) == {
        "log_norm",
        "alpha",
        "alpha_weighted",
        "log_alpha_norm",
        "log_spectral_norm",
        "stable_rank",
    }
    np.testing.assert_allclose(float(s.alpha), np.nanmean(embedded.alpha.values))
    both = concat({"a": embedded, "b": embedded.isel(layer=slice(0, 3))})
    sb = summary(both)
    assert sb.alpha.dims == ("model",)
    np.testing.assert_allclose(sb.alpha.sel(model="b"), np.nanmean(embedded.alpha.values[:3]))
    with pytest.raises(InvalidArgumentError):
        summary(embedded.alpha)


def test_concat_and_netcdf_round_trip(embedded, tmp_path):
    other = analyze(from_layers({"fc": heavy((100, 64))}), progress=False)
    both = concat([embedded, other], names=["digits", "random"])
    assert both.sizes == {"model": 2, "layer": 5}
    assert both["name"].dims == ("model", "layer")
    assert list(both["name"].sel(model="random").values) == ["fc", "", "", "", ""]
    assert np.isnan(both.alpha.sel(model="random").values[1:]).all()
    path = tmp_path / "details.nc"
    both.to_netcdf(path)
    with xr.open_dataset(path) as back:
        back = back.load()
    np.testing.assert_allclose(back.alpha, both.alpha)
    assert list(back["name"].sel(model="digits").values) == list(embedded["name"].values)
    assert list(back["warning"].sel(model="digits").values) == list(embedded.warning.values)
    many = analyze_many({"x": from_layers({"fc": heavy((100, 64))})}, progress=False)
    assert many.sizes["model"] == 1
    embedded.to_netcdf(tmp_path / "one.nc")  # a single analysis saves too


def test_model_distances():
    a = from_layers({"fc1": heavy((100, 64)), "fc2": heavy((64, 100), 1)})
    b = from_layers({"fc1": heavy((100, 64)), "fc2": heavy((64, 100), 2), "x": heavy((3, 3))})
    same = model_distances(a, a)
    np.testing.assert_allclose(same.frobenius, 0.0, atol=1e-12)
    np.testing.assert_allclose(same.cka, 1.0)
    d = model_distances(a, b)
    assert float(d.frobenius[0]) == 0.0 and float(d.frobenius[1]) > 0
    c = model_distances(a, from_layers({"fc1": heavy((10, 10))}), method="cosine")
    assert list(c.warning.values) == ["no-match", "no-match"] and np.isnan(c.cosine).all()


def test_model_distances_turn_an_unreadable_layer_into_its_row():
    def broken():
        raise OSError("disk on fire")

    a = from_layers(
        {"fc1": heavy((100, 64)), "fc2": heavy((64, 100), 1), "fc3": heavy((50, 40), 2)}
    )
    b = build_tree(
        [
            (
                "fc1",
                weight_node(LazyArray(broken, (100, 64), np.float32), kind="dense", layer_id=0),
            ),
            ("fc2", weight_node(heavy((64, 100), 3), kind="dense", layer_id=1)),
            ("fc3", weight_node(np.full((50, 40), np.inf), kind="dense", layer_id=2)),
        ]
    )
    d = model_distances(a, b)
    assert list(d.warning.values) == ["read-failed: disk on fire", "", "non-finite-weights"]
    assert np.isnan(d.frobenius[0]) and np.isnan(d.cka[2])
    ref = model_distances(
        from_layers({"fc2": heavy((64, 100), 1)}), from_layers({"fc2": heavy((64, 100), 3)})
    )
    assert float(d.frobenius[1]) == float(ref.frobenius[0])


# --------------------------------------------------------------------------- frameworks


@pytest.mark.slow
def test_torch_and_its_onnx_export_give_equal_details():
    torch = require("torch")
    onnx = require("onnx")
    model = digits_net()
    proto = onnx.load_from_string(onnx_export(model, (torch.zeros(1, 1, 8, 8),)))
    kw = dict(min_evals=8, progress=False)
    from_torch, from_onnx = analyze(model, **kw), analyze(proto, **kw)
    assert from_torch.sizes["layer"] == 6
    xr.testing.assert_allclose(from_torch.drop_attrs(), from_onnx.drop_attrs(), rtol=1e-12)
    np.testing.assert_array_equal(from_torch.warning, from_onnx.warning)
    reference = json.loads((REF / "ww077_analyze.json").read_text())["analyze_default"]
    ww = {r["name"]: r["alpha"] for r in reference["details"]}
    np.testing.assert_allclose(
        from_torch.alpha.values[1:5], [ww[n] for n in ("conv2", "conv3", "fc1", "fc2")], rtol=1e-9
    )


def test_onnx_file(embedded):
    d = analyze(str(data_path()), progress=False)
    xr.testing.assert_identical(d.drop_attrs(), embedded.drop_attrs())


def test_keras_model():
    keras = require("keras")
    model = keras.Sequential(
        [keras.Input((100,)), keras.layers.Dense(64, name="d1"), keras.layers.Dense(128, name="d2")]
    )
    model.layers[0].set_weights([heavy((100, 64)), np.zeros(64, np.float32)])
    d = analyze(model, progress=False)
    assert list(d.N.values) == [100, 128] and list(d.M.values) == [64, 64]
    ref = analyze(from_layers({"d1": heavy((100, 64)).T}), progress=False)
    np.testing.assert_allclose(d.alpha.values[0], ref.alpha.values[0], rtol=1e-12)


def test_safetensors_file_and_pytree(tmp_path):
    st = require("safetensors.numpy")
    w1, w2 = heavy((64, 100)), heavy((128, 64), 1)
    st.save_file(
        {"fc1.weight": w1, "fc1.bias": np.zeros(64, np.float32), "fc2.weight": w2},
        str(tmp_path / "m.safetensors"),
    )
    d = analyze(tmp_path / "m.safetensors", progress=False)
    assert list(d["name"].values) == ["fc1", "fc2"]
    ref = analyze(from_layers({"fc1": w1, "fc2": w2}), progress=False)
    xr.testing.assert_allclose(d.drop_attrs(), ref.drop_attrs())
    tree = {"fc1": {"kernel": w1.T, "bias": np.zeros(64, np.float32)}, "fc2": {"kernel": w2.T}}
    p = analyze(tree, progress=False)
    np.testing.assert_allclose(p.alpha, ref.alpha, rtol=1e-12)
    np.testing.assert_array_equal(p.N, ref.N)
