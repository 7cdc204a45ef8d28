"""ONNX adapter: every weight pattern, write-back under onnxruntime, bad files."""

import numpy as np
import pytest
import xarray as xr
from helpers import require

onnx = require("onnx")
ort = require("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rmtkit.adapters import onnx as aonnx  # noqa: E402
from rmtkit.collection import iter_layers, validate_collection  # noqa: E402
from rmtkit.errors import CorruptModelError, MissingDataError, UnsupportedModelError  # noqa: E402

RNG = np.random.default_rng(0)


def _w(*shape, dtype=np.float32):
    return RNG.normal(size=shape).astype(dtype)


WEIGHTS = {
    "conv.weight": _w(4, 3, 3, 3),  # Conv (out, in, kh, kw)
    "deconv.weight": _w(4, 2, 3, 3),  # ConvTranspose (in, out, kh, kw)
    "W_t": _w(16, 128),  # reached through Transpose -> MatMul B (128, 16)
    "W_half": _w(16, 10, dtype=np.float16),  # Cast -> Gemm B (in, out), transB=0
    "W_q": RNG.integers(-100, 100, size=(10, 12)).astype(np.int8),  # DequantizeLinear per-axis
    "W_q_scale": (RNG.random(12) * 0.01 + 0.005).astype(np.float32),
    "W_q_zp": RNG.integers(-3, 3, size=12).astype(np.int8),
    "W_flat": _w(48),  # Reshape -> MatMul B (12, 4)
    "conv1d.weight": _w(3, 1, 2),  # Conv1d
    "emb.weight": _w(20, 4),  # Gather
    "bias": _w(16),  # feeds an Add: not a layer
}
W_CONST = _w(5, 4)  # Constant node -> Gemm transB=1 (out, in)
EXPECTED_ORDER = [
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "MatMul",
    "MatMul",
    "Gemm",
    "Conv",
    "Gather",
]


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def build_model():
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "conv.weight"], ["h1"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        n(
            "ConvTranspose",
            ["h1", "deconv.weight"],
            ["h2"],
            name="/deconv/ConvTranspose",
            pads=[1, 1, 1, 1],
        ),
        _const("shape1", np.array([1, 128], np.int64)),
        n("Reshape", ["h2", "shape1"], ["h3"], name="/flat/Reshape"),
        n("Transpose", ["W_t"], ["W_t_T"], name="/fc1/Transpose", perm=[1, 0]),
        n("MatMul", ["h3", "W_t_T"], ["h4"], name="/fc1/MatMul"),
        n("Add", ["h4", "bias"], ["h5"], name="/fc1/Add"),
        n("Cast", ["W_half"], ["W_half_f"], name="/fc2/Cast", to=TensorProto.FLOAT),
        n("Gemm", ["h5", "W_half_f"], ["h6"], name="/fc2/Gemm"),
        n("DequantizeLinear", ["W_q", "W_q_scale", "W_q_zp"], ["W_dq"], name="/fc3/DQ", axis=1),
        n("MatMul", ["h6", "W_dq"], ["h7"], name="/fc3/MatMul"),
        _const("shape2", np.array([12, 4], np.int64)),
        n("Reshape", ["W_flat", "shape2"], ["W_r"], name="/fc4/Reshape"),
        n("MatMul", ["h7", "W_r"], ["h8"], name="/fc4/MatMul"),
        _const("W_const", W_CONST),
        n("Gemm", ["h8", "W_const"], ["h9"], name="/fc5/Gemm", transB=1),
        _const("shape3", np.array([1, 1, 5], np.int64)),
        n("Reshape", ["h9", "shape3"], ["h10"], name="/r/Reshape"),
        n("Conv", ["h10", "conv1d.weight"], ["y1"], name="/conv1d/Conv"),
        n("Gather", ["emb.weight", "ids"], ["y2"], name="/emb/Gather"),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in WEIGHTS.items()]
    graph = helper.make_graph(
        nodes,
        "patterns",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3]),
        ],
        [
            helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1, 3, 4]),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 3, 4]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


FEEDS = {
    "x": RNG.normal(size=(1, 3, 8, 8)).astype(np.float32),
    "ids": np.array([[1, 5, 19]], np.int64),
}


def run(model_or_path):
    src = (
        model_or_path.SerializeToString()
        if hasattr(model_or_path, "SerializeToString")
        else str(model_or_path)
    )
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, FEEDS)


def test_every_pattern_found_in_order_with_canonical_layout():
    tree = validate_collection(aonnx.from_onnx(build_model()))
    layers = list(iter_layers(tree))
    assert [w.attrs["op"] for _, w in layers] == EXPECTED_ORDER
    assert [w.attrs["layer_id"] for _, w in layers] == list(range(9))
    got = {w.attrs["source"]: (path, w) for path, w in layers}
    assert "bias" not in got and "shape1" not in got
    W = WEIGHTS
    np.testing.assert_array_equal(got["conv.weight"][1].values, W["conv.weight"])
    np.testing.assert_array_equal(
        got["deconv.weight"][1].values, W["deconv.weight"].transpose(1, 0, 2, 3)
    )
    np.testing.assert_array_equal(got["W_t"][1].values, W["W_t"])  # (in,out)^T of W_t^T
    np.testing.assert_array_equal(got["W_half"][1].values, W["W_half"].astype(np.float32).T)
    deq = (W["W_q"].astype(np.float32) - W["W_q_zp"]) * W["W_q_scale"]
    np.testing.assert_allclose(got["W_q"][1].values, deq.T, rtol=1e-6)
    np.testing.assert_array_equal(got["W_flat"][1].values, W["W_flat"].reshape(12, 4).T)
    np.testing.assert_array_equal(got["W_const"][1].values, W_CONST)
    np.testing.assert_array_equal(got["conv1d.weight"][1].values, W["conv1d.weight"])
    np.testing.assert_array_equal(got["emb.weight"][1].values, W["emb.weight"])
    kinds = [w.attrs["kind"] for _, w in layers]
    assert kinds == [
        "conv2d",
        "conv2d",
        "dense",
        "dense",
        "dense",
        "dense",
        "dense",
        "conv1d",
        "embedding",
    ]
    assert got["W_q"][1].attrs["dtype"] == "int8" and got["W_half"][1].attrs["dtype"] == "float16"
    assert got["conv.weight"][0] == "conv" and got["W_t"][0] == "fc1"


def _scaled(tree, factor, skip=("W_q",)):
    nodes = {}
    for node in tree.subtree:
        if "W" in node.data_vars:
            ds = node.to_dataset()
            if node.attrs["source"] not in skip:
                ds = ds.assign(W=ds["W"] * factor)
            nodes[node.path] = ds
    return xr.DataTree.from_dict(nodes)


def test_write_back_round_trip_runs_identically(tmp_path):
    model = build_model()
    tree = aonnx.from_onnx(model)
    out = tmp_path / "round.onnx"
    new = aonnx.save(model, tree, out)
    for a, b in zip(run(model), run(out)):
        np.testing.assert_array_equal(a, b)
    assert new.graph.initializer[0].name == "conv.weight"
    # modified weights come back (quantized ones re-quantized onto their grid)
    doubled = _scaled(tree, 2.0)
    again = aonnx.from_onnx(aonnx.save(model, doubled))
    for (_, w0), (_, w1) in zip(iter_layers(tree), iter_layers(again)):
        factor = 1.0 if w0.attrs["source"] == "W_q" else 2.0
        np.testing.assert_allclose(
            w1.values, factor * w0.values, rtol=1e-3 if w0.attrs["source"] == "W_half" else 1e-7
        )
    # a re-quantized weight that moved by a fraction of a step rounds back
    nudged = _scaled(tree, 1.0 + 1e-4, skip=())
    back = aonnx.from_onnx(aonnx.save(model, nudged))
    np.testing.assert_array_equal(back["fc3"]["W"].values, tree["fc3"]["W"].values)


def test_external_data_is_lazy_and_runs(tmp_path):
    model = build_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="ext.data", size_threshold=0
    )
    assert (tmp_path / "ext.data").stat().st_size > 1000
    tree = aonnx.load(path)
    ref = aonnx.from_onnx(build_model())  # save_model moved `model`'s tensors out
    for (_, a), (_, b) in zip(iter_layers(ref), iter_layers(tree)):
        np.testing.assert_array_equal(a.values, b.values)
    out = tmp_path / "saved.onnx"
    aonnx.save(path, tree, out)
    for a, b in zip(run(path), run(out)):
        np.testing.assert_array_equal(a, b)


def qdq_model():
    """Static QDQ quantization as onnxruntime's quantizer writes it: activations and a float
    weight each pass QuantizeLinear -> DequantizeLinear."""
    n = helper.make_node
    w = _w(8, 6)
    scale = np.float32(np.abs(w).max() / 127)
    nodes = [
        n("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="/in/Q"),
        n("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="/in/DQ"),
        n("QuantizeLinear", ["fc.weight", "ws", "wz"], ["wq"], name="/fc/Q"),
        n("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="/fc/DQ"),
        n("MatMul", ["xd", "wd"], ["y"], name="/fc/MatMul"),
    ]
    inits = [
        numpy_helper.from_array(w, "fc.weight"),
        numpy_helper.from_array(np.array(scale), "ws"),
        numpy_helper.from_array(np.array(0, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(3, np.uint8), "xz"),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, w, scale


def gemm_model(alpha: float, w: np.ndarray):
    """``y = alpha * x @ w.T`` (one Gemm, transB=1)."""
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="/fc/Gemm", transB=1, alpha=alpha)
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, w.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, w.shape[0]])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_gemm_alpha_scales_the_weight_as_the_runtime_does(tmp_path):
    w = _w(6, 8)
    model = gemm_model(0.25, w)
    ((_, got),) = iter_layers(aonnx.from_onnx(model))
    np.testing.assert_allclose(got.values, 0.25 * w, rtol=1e-7)
    x = {"x": RNG.normal(size=(2, 8)).astype(np.float32)}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, x)[0], x["x"] @ got.values.T, rtol=1e-5)
    # written back as the stored B: the graph computes with the weight it was given
    tree = aonnx.from_onnx(model)
    out = tmp_path / "gemm.onnx"
    aonnx.save(model, _scaled(tree, 2.0), out)
    ((_, back),) = iter_layers(aonnx.from_onnx(str(out)))
    np.testing.assert_allclose(back.values, 0.5 * w, rtol=1e-6)


def test_qdq_model_reads_the_fake_quantized_weight_and_round_trips(tmp_path):
    model, w, scale = qdq_model()
    ((path, got),) = iter_layers(aonnx.from_onnx(model))
    assert path == "fc" and got.attrs["dtype"] == "float32"
    expected = np.clip(np.rint(w / scale), -128, 127) * scale
    np.testing.assert_allclose(got.values, expected.T, rtol=1e-6)
    out = tmp_path / "qdq.onnx"
    aonnx.save(model, aonnx.from_onnx(model), out)
    x = {"x": RNG.normal(size=(2, 8)).astype(np.float32)}
    a = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(a.run(None, x)[0], b.run(None, x)[0])


@pytest.mark.bad_input
def test_missing_external_data(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        build_model(), str(path), save_as_external_data=True, location="ext.data", size_threshold=0
    )
    (tmp_path / "ext.data").unlink()
    with pytest.raises(MissingDataError, match="ext.data"):
        aonnx.load(path)


@pytest.mark.bad_input
def test_truncated_file(tmp_path):
    data = build_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptModelError, match="cut.onnx"):
        aonnx.load(path)


@pytest.mark.bad_input
def test_inconsistent_tensor_bytes(tmp_path):
    model = build_model()
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:-4]
    with pytest.raises(CorruptModelError, match="conv.weight"):
        aonnx.from_onnx(model)


@pytest.mark.bad_input
def test_no_analyzable_layer(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.ones(3, np.float32), "b")],
    )
    path = tmp_path / "add.onnx"
    onnx.save_model(helper.make_model(graph), str(path))
    with pytest.raises(UnsupportedModelError, match="add.onnx.*no analyzable layer"):
        aonnx.load(path)


def test_nan_weight_loads():
    model = build_model()
    w = WEIGHTS["conv.weight"].copy()
    w[0, 0, 0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "conv.weight"))
    tree = aonnx.from_onnx(model)
    assert np.isnan(tree["conv"]["W"].values[0, 0, 0, 0])


def test_default_model_ships():
    from rmtkit import data_path

    tree = aonnx.load(data_path())
    shapes = [w.shape for _, w in iter_layers(tree)]
    assert shapes == [(16, 1, 3, 3), (64, 16, 3, 3), (128, 1024), (64, 128), (10, 64)]
