"""The weight collection: building, validating, iterating, laziness."""

import numpy as np
import pytest
import xarray as xr

from rmtkit.collection import (
    LazyArray,
    from_layers,
    iter_layers,
    sanitize_path,
    validate_collection,
    weight_node,
)
from rmtkit.errors import InvalidWeightsError


def test_from_layers_kinds_dims_order():
    rng = np.random.default_rng(0)
    tree = from_layers(
        {
            "encoder.fc1": rng.normal(size=(6, 4)),
            "conv": rng.normal(size=(5, 3, 2, 2)),
            "tcn": rng.normal(size=(5, 3, 7)).astype(np.float32),
            "emb": (rng.normal(size=(10, 4)), "embedding"),
        }
    )
    validate_collection(tree)
    got = [(p, w.dims, w.attrs["kind"], w.attrs["layer_id"]) for p, w in iter_layers(tree)]
    assert got == [
        ("encoder/fc1", ("fan_out", "fan_in"), "dense", 0),
        ("conv", ("fan_out", "fan_in", "kh", "kw"), "conv2d", 1),
        ("tcn", ("fan_out", "fan_in", "k"), "conv1d", 2),
        ("emb", ("vocab", "dim"), "embedding", 3),
    ]
    assert tree["tcn"]["W"].dtype == np.float32
    assert tree["encoder/fc1"].attrs["source"] == "encoder.fc1"


def test_iter_layers_follows_layer_id_not_insertion():
    a = weight_node(np.ones((2, 3)), source="a", layer_id=1)
    b = weight_node(np.ones((2, 3)), source="b", layer_id=0)
    tree = xr.DataTree.from_dict({"a": a, "b": b})
    assert [p for p, _ in iter_layers(tree)] == ["b", "a"]


def test_weight_node_canonicalizes_and_widens():
    kernel = np.arange(6, dtype=np.float16).reshape(2, 3)  # (in, out)
    node = weight_node(kernel, perm=(1, 0), source="k", framework="x", op="Dense")
    np.testing.assert_array_equal(node["W"].values, kernel.T.astype(np.float32))
    assert node["W"].dtype == np.float32 and node.attrs["dtype"] == "float16"


def test_lazy_array_reads_on_demand_only():
    calls = []

    def load():
        calls.append(1)
        return np.arange(12.0).reshape(3, 4)

    lazy = LazyArray(load, (3, 4), np.float64)
    node = weight_node(lazy, perm=(1, 0), source="w")
    tree = xr.DataTree.from_dict({"w": node})
    validate_collection(tree)
    repr(tree)
    assert calls == []
    np.testing.assert_array_equal(tree["w"]["W"].values, np.arange(12.0).reshape(3, 4).T)
    assert len(calls) == 1
    tree["w"]["W"].values
    assert len(calls) == 2  # nothing cached on the tree


def test_nan_is_allowed_through():
    w = np.ones((4, 4))
    w[0, 0] = np.nan
    tree = validate_collection(from_layers({"fc": w}))
    assert np.isnan(tree["fc"]["W"].values[0, 0])


def test_sanitize_path():
    assert sanitize_path("encoder.layer.0.attention.query") == "encoder/layer/0/attention/query"
    assert sanitize_path("onnx::MatMul_12") == "onnx/MatMul_12"
    assert sanitize_path("") == "layer"


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda ds: ds.assign_attrs(kind="lstm"), "kind 'lstm'"),
        (lambda ds: ds.drop_attrs().assign_attrs(kind="dense"), "missing attrs"),
        (lambda ds: ds.rename_dims(fan_in="cols"), "must have dims"),
        (lambda ds: ds.assign(W=ds["W"].astype(np.complex64)), "must hold real numbers"),
        (lambda ds: ds.assign_attrs(layer_id="0"), "layer_id must be an int"),
    ],
)
def test_validate_names_node_and_problem(mutate, match):
    good = weight_node(np.ones((3, 2)), source="fc", layer_id=0)
    tree = xr.DataTree.from_dict({"enc/fc": mutate(good)})
    with pytest.raises(InvalidWeightsError, match=match) as info:
        validate_collection(tree)
    assert "/enc/fc" in str(info.value)


@pytest.mark.bad_input
def test_validate_duplicate_ids_and_empty():
    a = weight_node(np.ones((3, 2)), source="a", layer_id=0)
    with pytest.raises(InvalidWeightsError, match="also used by"):
        validate_collection(xr.DataTree.from_dict({"a": a, "b": a.copy()}))
    with pytest.raises(InvalidWeightsError, match="no layer"):
        validate_collection(xr.DataTree())
    with pytest.raises(InvalidWeightsError, match="must be an xarray.DataTree"):
        validate_collection({"a": np.ones((2, 2))})


@pytest.mark.bad_input
def test_weight_node_bad_rank():
    with pytest.raises(InvalidWeightsError, match="'bias'.*1 dims"):
        weight_node(np.ones(3), source="bias")
    with pytest.raises(InvalidWeightsError, match="embedding"):
        weight_node(np.ones((2, 3, 4)), kind="embedding", source="e")
