"""Quantized ONNX models, made here by onnxruntime's own quantizers from the embedded (trained)
model, read as the weights the runtime computes with.

Every quantized layer is checked against onnxruntime itself, never against rmtkit's
dequantizer: the layer's own nodes are cut out of the model (``onnx.utils.Extractor``) and run
on identity / basis inputs, which makes the runtime print the effective matrix. Operators that
requantize their output (QLinearConv, QLinearMatMul, QGemm) cannot print a float matrix; they
run with their weight initializers untouched, an input scale of 1 and the output scale and
zero point of the weight, so their integer output *is* the code they combine (module
``_probe_requantizing``).
"""

import numpy as np
import pytest
from _deps import require

onnx = require("onnx")
ort = require("onnxruntime")
require("onnx_ir")  # onnxruntime's MatMulNBitsQuantizer needs it
require("sklearn")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer  # noqa: E402

import rmtkit  # noqa: E402
from rmtkit.collection import iter_layers  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------- test models
def _digits(n=64):
    from sklearn.datasets import load_digits

    return (load_digits().images[:n] / 16.0).astype(np.float32)[:, None]


class _Reader(CalibrationDataReader):
    """Calibration batches of scikit-learn's digits (the data the embedded model learnt)."""

    def __init__(self, x, name):
        self._batches = iter([{name: x[i : i + 8]} for i in range(0, len(x), 8)])

    def get_next(self):
        return next(self._batches, None)


def gemm_to_matmul(model):
    """The embedded model with each ``Gemm`` as ``MatMul`` + ``Add`` (same weights, stored
    ``(in, out)``): the int4 quantizer reads MatMul only."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name: i for i in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        if n.op_type != "Gemm":
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if any(a.name == "transB" and a.i for a in n.attribute):
            w = w.T
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w), n.input[1]))
        mid = n.output[0] + "_mm"
        nodes.append(helper.make_node("MatMul", [n.input[0], n.input[1]], [mid], name=n.name))
        nodes.append(helper.make_node("Add", [mid, n.input[2]], [n.output[0]], name=n.name + "a"))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def embedding_model():
    """Gather (an embedding) -> ReduceMean -> MatMul, with trained weights of the embedded
    model (fc1 as a 1024 x 128 table, fc2 as the projection)."""
    w = {i.name: numpy_helper.to_array(i) for i in onnx.load(rmtkit.data_path()).graph.initializer}
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb.weight", "ids"], ["h"], name="/emb/Gather"),
            helper.make_node("ReduceMean", ["h"], ["p"], axes=[1], keepdims=0, name="/pool/Mean"),
            helper.make_node("MatMul", ["p", "fc.weight"], ["y"], name="/fc/MatMul"),
        ],
        "embnet",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64])],
        [
            numpy_helper.from_array(np.ascontiguousarray(w["fc1.weight"].T), "emb.weight"),
            numpy_helper.from_array(np.ascontiguousarray(w["fc2.weight"].T), "fc.weight"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _nbits(model, path, *, symmetric, fmt, gather=False):
    kw = {}
    if gather:
        kw = dict(op_types_to_quantize=("Gather", "MatMul"), quant_axes=(("Gather", 1),))
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the quantizer edits it
    q = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=symmetric, quant_format=fmt, **kw)
    q.process()
    onnx.save(q.model.model, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> path of every quantized model (and the float ones they come from)."""
    d = tmp_path_factory.mktemp("quant")
    src = str(rmtkit.data_path())
    x = _digits()
    out = {"float": src}
    quantize_dynamic(src, d / "dyn_int8.onnx", weight_type=QuantType.QInt8)
    quantize_dynamic(src, d / "dyn_uint8_pc.onnx", weight_type=QuantType.QUInt8, per_channel=True)
    quantize_static(
        src, d / "qdq_int8_pc.onnx", _Reader(x, "image"), quant_format=QuantFormat.QDQ,
        per_channel=True, weight_type=QuantType.QInt8,
    )  # fmt: skip
    quantize_static(
        src, d / "qop_int8.onnx", _Reader(x, "image"), quant_format=QuantFormat.QOperator,
        per_channel=False, weight_type=QuantType.QInt8,
    )  # fmt: skip
    mm = gemm_to_matmul(onnx.load(src))
    onnx.save(mm, d / "float_matmul.onnx")
    quantize_static(
        str(d / "float_matmul.onnx"), d / "qop_matmul.onnx", _Reader(x, "image"),
        quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8,
    )  # fmt: skip
    _nbits(mm, d / "int4_sym.onnx", symmetric=True, fmt=QuantFormat.QOperator)
    _nbits(mm, d / "int4_asym.onnx", symmetric=False, fmt=QuantFormat.QOperator)
    _nbits(mm, d / "int4_qdq.onnx", symmetric=False, fmt=QuantFormat.QDQ)
    emb = embedding_model()
    onnx.save(emb, d / "emb_float.onnx")
    quantize_dynamic(
        str(d / "emb_float.onnx"), d / "emb_dyn.onnx", weight_type=QuantType.QUInt8,
        op_types_to_quantize=["Gather", "MatMul"],
    )  # fmt: skip
    _nbits(emb, d / "emb_int4.onnx", symmetric=False, fmt=QuantFormat.QOperator, gather=True)
    for p in d.glob("*.onnx"):
        out[p.stem] = str(p)
    return out


# --------------------------------------------------------------------------- runtime probes
def _session(model):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _extract(model, inputs, outputs, ids=None):
    """The subgraph of ``model`` from ``inputs`` (float, any shape) to ``outputs``: the nodes
    the outputs depend on, with the initializers they read (as ``onnx.utils.Extractor`` does,
    without needing inferred shapes)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    keep, todo, seen = [], list(outputs), set(inputs) | {ids}
    while todo:
        name = todo.pop()
        if name in seen or name in inits or not name:
            continue
        seen.add(name)
        node = producer[name]
        if node not in keep:
            keep.append(node)
            todo.extend(node.input)
    order = [n for n in model.graph.node if n in keep]
    used = {i for n in order for i in n.input}
    graph = helper.make_graph(
        order,
        "layer",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in inputs]
        + ([helper.make_tensor_value_info(ids, TensorProto.INT64, None)] if ids else []),
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [inits[i] for i in sorted(used & set(inits))],
    )
    return _session(helper.make_model(graph, opset_imports=list(model.opset_import)))


def _consumers(model, name):
    return [n for n in model.graph.node if name in n.input]


def _producer(model, name):
    return next(n for n in model.graph.node if name in n.output)


def _layer_op(model, source):
    """The node that uses the weight ``source`` (directly or through DequantizeLinear /
    Transpose / Reshape / Cast)."""
    name = source
    for _ in range(8):
        node = _consumers(model, name)[0]
        if node.op_type in ("DequantizeLinear", "Transpose", "Reshape", "Cast", "Identity"):
            name = node.output[0]
            continue
        return node
    raise AssertionError(f"no layer op uses {source}")


def _conv_basis(shape):
    """One-hot images, one per weight entry ``(c, i, j)`` of a ``(O, C, kh, kw)`` kernel."""
    _, c, kh, kw = shape
    return np.eye(c * kh * kw, dtype=np.float32).reshape(c * kh * kw, c, kh, kw)


def _conv_from_outputs(node, out, shape):
    """``(O, C, kh, kw)`` from the outputs of :func:`_conv_basis`: the output pixel whose
    window is exactly the input (stride 1: the one at the top/left padding)."""
    pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [0, 0, 0, 0])
    o, c, kh, kw = shape
    return out[:, :, pads[0], pads[1]].T.reshape(o, c, kh, kw)


def _run_float_op(model, node, shape):
    """MatMul / Gemm / Conv / MatMulNBits on a float input: out(basis) - out(0) (the bias)."""
    sess = _extract(model, [node.input[0]], [node.output[0]])
    name = sess.get_inputs()[0].name
    basis = _conv_basis(shape) if len(shape) == 4 else np.eye(shape[1], dtype=np.float32)
    out = sess.run(None, {name: basis})[0]
    out0 = sess.run(None, {name: np.zeros_like(basis[:1])})[0]
    w = _conv_from_outputs(node, out - out0, shape) if len(shape) == 4 else (out - out0).T
    return w, float(np.abs(out0).max())


def _run_integer_op(model, node, shape):
    """MatMulInteger / ConvInteger of a dynamically quantized model: the subgraph from the
    float input of its DynamicQuantizeLinear to the float output of the scaling Mul."""
    dql = _producer(model, node.input[0])
    cast = _consumers(model, node.output[0])[0]
    mul = _consumers(model, cast.output[0])[0]
    sess = _extract(model, [dql.input[0]], [mul.output[0]])
    basis = _conv_basis(shape) if len(shape) == 4 else np.eye(shape[1], dtype=np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: basis})[0]
    return (_conv_from_outputs(node, out, shape) if len(shape) == 4 else out.T), 0.0


def _probe_requantizing(model, node, shape):
    """QLinearConv / QLinearMatMul / QGemm, per-tensor weight parameters: input scale 1 and
    zero point 0, output scale and zero point those of the weight, so the integer output is
    the weight code; the runtime dequantizes it with the weight's scale and zero point."""
    inits = {i.name: i for i in model.graph.initializer}
    w_idx = 3
    w, w_s, w_zp = (inits[node.input[i]] for i in (w_idx, w_idx + 1, w_idx + 2))
    x_zp_type = inits[node.input[2]].data_type
    x_zp = helper.make_tensor("x_zp", x_zp_type, [], [0])
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    ws, wzp = numpy_helper.to_array(w_s), numpy_helper.to_array(w_zp)
    assert ws.size == 1, "the probe needs a per-tensor weight scale"
    y_s = numpy_helper.from_array(ws.reshape(()).astype(np.float32), "y_s")
    y_zp = numpy_helper.from_array(wzp.reshape(()), "y_zp")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "QGemm":
        ins = ["xq", "one", "x_zp", w.name, "y_s", "y_zp", "", "y_s", "y_zp"]
    else:
        ins = ["xq", "one", "x_zp", w.name, "y_s", "y_zp", "y_s", "y_zp"]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "x_zp"], ["xq"]),
        helper.make_node(node.op_type, ins, ["yq"], domain=node.domain, **attrs),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, one, x_zp, y_s, y_zp],
    )
    probe = helper.make_model(graph, opset_imports=list(model.opset_import))
    sess = _session(probe)
    basis = _conv_basis(shape) if len(shape) == 4 else np.eye(shape[1], dtype=np.float32)
    out = sess.run(None, {"x": basis})[0]
    if len(shape) == 4:
        return _conv_from_outputs(node, out, shape), 0.0
    return out.T, 0.0


def _run_gather(model, node, shape):
    """An embedding: the rows of the table for the indices 0 .. vocab - 1."""
    ids = node.input[1]
    last = node if node.op_type == "GatherBlockQuantized" else _consumers(model, node.output[0])[0]
    sess = _extract(model, [], [last.output[0]], ids=ids)
    return sess.run(None, {ids: np.arange(shape[0], dtype=np.int64)})[0], 0.0


def runtime_weight(model, source, shape):
    """The matrix onnxruntime computes with for the layer stored in ``source``."""
    node = _layer_op(model, source)
    if node.op_type in ("Gather", "GatherBlockQuantized"):
        return _run_gather(model, node, shape)
    if node.op_type in ("MatMulInteger", "ConvInteger"):
        return _run_integer_op(model, node, shape)
    if node.op_type in ("QLinearConv", "QLinearMatMul", "QGemm"):
        return _probe_requantizing(model, node, shape)
    return _run_float_op(model, node, shape)


QUANTIZED = [
    "dyn_int8",
    "dyn_uint8_pc",
    "qdq_int8_pc",
    "qop_int8",
    "qop_matmul",
    "int4_sym",
    "int4_asym",
    "int4_qdq",
    "emb_dyn",
    "emb_int4",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", QUANTIZED)
def test_effective_weights_are_what_onnxruntime_computes_with(models, name):
    model = onnx.load(models[name])
    tree = rmtkit.load(models[name])
    checked = 0
    for path, w in iter_layers(tree):
        if not w.attrs["quant"]:
            continue  # a float layer the quantizer left alone
        ours = np.asarray(w.values)
        theirs, bias = runtime_weight(model, w.attrs["source"], ours.shape)
        atol = 8 * EPS32 * (bias + np.abs(ours).max())  # the op's own float rounding
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=atol, err_msg=f"{name}:{path}")
        checked += 1
    assert checked >= 2, f"{name}: only {checked} quantized layers"


EXPECTED_QUANT = {
    "dyn_int8": ("int8 per-tensor", "MatMulInteger"),
    "dyn_uint8_pc": ("uint8 per-channel", "MatMulInteger"),
    "qdq_int8_pc": ("int8 per-channel", "Gemm"),
    "qop_int8": ("int8 per-tensor", "QGemm"),
    "qop_matmul": ("uint8 per-tensor", "QLinearMatMul"),
    "int4_sym": ("int4 block 32", "MatMulNBits"),
    "int4_asym": ("int4 block 32", "MatMulNBits"),
    "int4_qdq": ("uint4 block 32", "MatMul"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_QUANT))
def test_every_layer_is_read_with_its_source_name_and_quant(models, name):
    """The quantized model has the float model's rows (5 layers, the same paths: quantizer
    suffixes are dropped), each saying what it read."""
    quant, op = EXPECTED_QUANT[name]
    float_name = "float_matmul" if name.startswith(("int4", "qop_matmul")) else "float"
    ref = rmtkit.describe(models[float_name])
    d = rmtkit.describe(models[name])
    assert (
        list(d["name"].values)
        == list(ref["name"].values)
        == [
            "conv1",
            "conv2",
            "fc1",
            "fc2",
            "fc3",
        ]
    )
    tree = rmtkit.load(models[name])
    fc1 = tree["fc1"]
    assert fc1.attrs["quant"] == quant and fc1.attrs["op"] == op
    assert str(d["quant"].values[2]) == quant
    init_names = {i.name for i in onnx.load(models[name]).graph.initializer}
    assert set(d["source"].values) <= init_names


def test_embedding_codes_are_dequantized(models):
    """The issue's MiniLM case: ``quantize_dynamic`` gathers uint8 codes and dequantizes the
    rows after the Gather; rmtkit used to read the codes as weights."""
    d = rmtkit.analyze(models["emb_dyn"], progress=False)
    ref = rmtkit.analyze(models["emb_float"], progress=False)
    assert list(d["quant"].values) == ["uint8 per-tensor", "uint8 per-tensor"]
    assert str(d["kind"].values[0]) == "embedding"
    np.testing.assert_allclose(d["alpha"].values, ref["alpha"].values, rtol=0.05)
    np.testing.assert_allclose(d["log_norm"].values, ref["log_norm"].values, atol=0.01)


def test_float16_and_bfloat16_initializers_are_layers():
    w = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
    for dtype in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
        t = helper.make_tensor("fc.weight", dtype, w.shape, vals=w.flatten().tolist())
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")],
            "g",
            [helper.make_tensor_value_info("x", dtype, [1, 64])],
            [helper.make_tensor_value_info("y", dtype, [1, 96])],
            [t],
        )
        tree = rmtkit.load(helper.make_model(graph))
        (path, layer), *rest = list(iter_layers(tree))
        assert not rest and layer.attrs["quant"] == "" and layer.shape == (96, 64)
        want = numpy_helper.to_array(t).astype(np.float32).T
        np.testing.assert_array_equal(layer.values, want)


# --------------------------------------------------------------------------- bad input
def _qdq_fc1(model_path, edit):
    """The static QDQ model with one edit of fc1's weight DequantizeLinear parameters."""
    m = onnx.load(model_path)
    inits = {i.name: i for i in m.graph.initializer}
    dq = next(n for n in m.graph.node if n.input and n.input[0] == "fc1.weight_quantized")
    edit(m, dq, inits)
    return m


def _set(inits, name, array):
    inits[name].CopyFrom(numpy_helper.from_array(array, name))


BAD_PARAMS = {
    "scale of the wrong length": lambda m, dq, i: (
        _set(i, dq.input[1], np.full(127, 0.01, np.float32)),
        _set(i, dq.input[2], np.zeros(127, np.int8)),
    ),
    "block size not dividing the dimension": lambda m, dq, i: (
        dq.attribute.append(helper.make_attribute("block_size", 100)),
        _set(i, dq.input[1], np.full((128, 10), 0.01, np.float32)),
        _set(i, dq.input[2], np.zeros((128, 10), np.int8)),
    ),
    "zero scale": lambda m, dq, i: _set(
        i, dq.input[1], np.where(np.arange(128) == 7, 0.0, 0.01).astype(np.float32)
    ),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_inconsistent_scale_is_a_typed_error_of_its_layer_only(models, case):
    """The model loads; reading fc1 raises CorruptModelError naming its weight tensor; analyze
    gives fc1 a read-failed row and analyses the other layers as usual."""
    from rmtkit.errors import CorruptModelError, RowWarning

    model = _qdq_fc1(models["qdq_int8_pc"], BAD_PARAMS[case])
    tree = rmtkit.load(model)
    with pytest.raises(CorruptModelError, match="fc1.weight_quantized"):
        np.asarray(tree["fc1"]["W"].values)
    d = rmtkit.analyze(model, progress=False)
    ref = rmtkit.analyze(models["qdq_int8_pc"], progress=False)
    warnings = list(d["warning"].values)
    assert RowWarning.of(warnings[2]) == RowWarning.READ_FAILED and "fc1" in warnings[2]
    others = [0, 1, 3, 4]
    np.testing.assert_array_equal(d["log_norm"].values[others], ref["log_norm"].values[others])
    assert np.isnan(d["log_norm"].values[2])


@pytest.mark.bad_input
def test_integer_weights_of_an_unknown_scheme_are_flagged_never_read():
    """A quantized matmul rmtkit does not read (onnxruntime's MatMulBnb4: NF4 codes) and int8
    codes fed straight to a Gather: rows ``unsupported-quantization: <op>``, NaN metrics;
    the float layer beside them is analysed."""
    from rmtkit.errors import RowWarning, UnsupportedModelError

    rng = np.random.default_rng(0)
    n, k = 96, 128
    inits = [
        numpy_helper.from_array(rng.integers(0, 255, n * k // 2).astype(np.uint8), "q.weight"),
        numpy_helper.from_array(np.ones(n * k // 64, np.float32), "q.absmax"),
        numpy_helper.from_array(rng.integers(-100, 100, (300, 64)).astype(np.int8), "emb.w"),
        numpy_helper.from_array(rng.standard_normal((k, 80)).astype(np.float32), "fc.weight"),
    ]
    nodes = [
        helper.make_node(
            "MatMulBnb4",
            ["x", "q.weight", "q.absmax"],
            ["h"],
            domain="com.microsoft",
            K=k,
            N=n,
            block_size=64,
            quant_type=1,
            name="/q/MatMulBnb4",
        ),  # fmt: skip
        helper.make_node("Gather", ["emb.w", "ids"], ["e"], name="/emb/Gather"),
        helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    d = rmtkit.analyze(model, progress=False)
    rows = dict(zip(d["source"].values, d["warning"].values, strict=True))
    u = RowWarning.UNSUPPORTED_QUANTIZATION
    assert rows["q.weight"] == u.because("MatMulBnb4")
    assert rows["emb.w"] == u.because("Gather on int8 codes")
    assert RowWarning.of(rows["fc.weight"]) != u
    q = d.isel(layer=list(d["source"].values).index("q.weight"))
    assert (int(q["N"]), int(q["M"])) == (k, n) and np.isnan(q["log_norm"].item())
    assert np.isfinite(d["log_norm"].values[list(d["source"].values).index("fc.weight")])
    tree = rmtkit.load(model)
    with pytest.raises(UnsupportedModelError, match="unsupported-quantization"):
        np.asarray(tree["q"]["W"].values)
    dist = rmtkit.model_distances(model, model)
    assert list(dist["warning"].values).count(u.because("MatMulBnb4")) == 1


# --------------------------------------------------------------------------- hand-built schemes
def _single_op_model(node, inits, opset=21):
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)],
    )


def _only_layer(model):
    ((_, w),) = list(iter_layers(rmtkit.load(model)))
    return w


@pytest.mark.parametrize("zero_points", ["none", "float", "packed"])
@pytest.mark.parametrize("g_idx", [False, True])
def test_matmul_nbits_zero_points_and_g_idx_against_onnxruntime(zero_points, g_idx):
    """MatMulNBits with and without zero points (packed uint8 or float) and act-order g_idx,
    against onnxruntime; packed zero points with g_idx (which onnxruntime's CPU kernel
    ignores) are flagged instead of read."""
    rng = np.random.default_rng(1)
    k, n, bs = 80, 24, 16  # K not a multiple of the block: the last block is padded
    kb = -(-k // bs)
    inits = [
        numpy_helper.from_array(rng.integers(0, 255, (n, kb, bs // 2), dtype=np.uint8), "B"),
        numpy_helper.from_array((rng.random((n, kb)) + 0.5).astype(np.float32), "S"),
    ]
    names = ["x", "B", "S", "", ""]
    if zero_points == "packed":
        zp = rng.integers(0, 255, (n, (kb + 1) // 2), dtype=np.uint8)
    else:
        zp = (rng.random((n, kb)) * 15).astype(np.float32)
    if zero_points != "none":
        inits.append(numpy_helper.from_array(zp, "Z"))
        names[3] = "Z"
    if g_idx:
        inits.append(
            numpy_helper.from_array(rng.permutation(np.arange(k) // bs).astype(np.int32), "G")
        )
        names[4] = "G"
    while not names[-1]:
        names.pop()
    node = helper.make_node(
        "MatMulNBits", names, ["y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=bs
    )
    model = _single_op_model(node, inits)
    w = _only_layer(model)
    if g_idx and zero_points == "packed":
        assert w.attrs["rmtkit_warning"].endswith("(g_idx with packed zero points)")
        return
    theirs = _session(model).run(None, {"x": np.eye(k, dtype=np.float32)})[0].T
    np.testing.assert_allclose(w.values, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "dtype, opset",
    [(np.int16, 21), (np.uint16, 21), ("float8_e4m3fn", 21), ("int4", 21), ("uint4", 21)],
)
def test_dequantize_linear_types_against_onnxruntime(dtype, opset):
    """DequantizeLinear of int16 / uint16 / float8 / int4 / uint4 weights, per axis (float8: per
    tensor, no zero point) and blocked (int4 / uint4), feeding a MatMul."""
    import ml_dtypes

    rng = np.random.default_rng(2)
    k, n = 64, 48
    dt = np.dtype(getattr(ml_dtypes, dtype)) if isinstance(dtype, str) else np.dtype(dtype)
    attrs = {"axis": 1}
    if dtype == "float8_e4m3fn":
        q = rng.standard_normal((k, n)).astype(dt)
        scale, zp = np.array(0.05, np.float32), None
        attrs = {}
    elif dtype in ("int4", "uint4"):
        lo, hi = (-8, 7) if dtype == "int4" else (0, 15)
        q = rng.integers(lo, hi + 1, (k, n)).astype(dt)
        scale = (rng.random((k // 16, n)) + 0.5).astype(np.float32)
        zp = rng.integers(lo, hi + 1, (k // 16, n)).astype(dt)
        attrs = {"axis": 0, "block_size": 16}
    else:
        info = np.iinfo(dt)
        q = rng.integers(info.min, info.max, (k, n)).astype(dt)
        scale = (rng.random(n) * 1e-3 + 1e-4).astype(np.float32)
        zp = rng.integers(info.min // 2, info.max // 2, n).astype(dt)
    inits = [numpy_helper.from_array(q, "W_q"), numpy_helper.from_array(scale, "sc")]
    ins = ["W_q", "sc"]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "zp"))
        ins.append("zp")
    dq = helper.make_node("DequantizeLinear", ins, ["W"], **attrs)
    mm = helper.make_node("MatMul", ["x", "W"], ["y"])
    graph = helper.make_graph(
        [dq, mm],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    w = _only_layer(model)
    theirs = _session(model).run(None, {"x": np.eye(k, dtype=np.float32)})[0].T
    np.testing.assert_allclose(w.values, theirs, rtol=1e-6)
    assert w.attrs["quant"].startswith(dt.name)
