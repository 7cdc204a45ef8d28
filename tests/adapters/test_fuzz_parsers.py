"""Fuzz: mutated ONNX and safetensors files into ``rmtkit.load`` and every layer's ``W``.

A byte-mutation loop (bit flips, special bytes, truncation, splicing, chunk deletion,
length-field corruption) over real files -- the embedded ``digits_cnn.onnx`` and a small ONNX
model built here (Gather, Gemm, MatMul, Conv, a quantized weight behind DequantizeLinear /
Transpose / Reshape, external data) and a safetensors file -- plus structured mutations: the
safetensors JSON header (wrong dtypes, offsets past EOF, overlapping tensors, huge or negative
shapes, wrong JSON types) and the ONNX protobuf (dims, data types, attributes, op types, inputs,
external-data entries).

Contract: loading and reading every layer either succeeds or raises an
:mod:`rmtkit.errors` type; each case finishes within :data:`CASE_SECONDS`, and allocates at most
:data:`CASE_BYTES` of Python/numpy memory (``tracemalloc``): a header claiming a 1 TB tensor is
refused from the header. The random generator is seeded and the case counts are fixed, so CI
runs the same cases every time.
"""

import json
import signal
import struct
import time
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import require

from rmtkit import data_path, load
from rmtkit.collection import iter_layers
from rmtkit.errors import CorruptModelError, MissingDataError, RmtkitError

onnx = require("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SEED = 7
#: wall-clock bound of one case (load + read every layer); a hang fails the test
CASE_SECONDS = 5.0
#: traced allocation bound of one case (the files are < 1 MB)
CASE_BYTES = 32 << 20


# --------------------------------------------------------------------------- inputs


def small_onnx(external: Path | None = None) -> "onnx.ModelProto":
    """A model with every weight path the adapter follows (module docstring)."""
    r = np.random.default_rng(1)

    def t(name, a):
        return numpy_helper.from_array(a, name)

    inits = [
        t("fc1.weight", r.normal(size=(8, 6)).astype(np.float32)),
        t("fc2.weight", r.normal(size=(8, 5)).astype(np.float32)),
        t("conv.weight", r.normal(size=(4, 2, 3, 3)).astype(np.float32)),
        t("emb.weight", r.normal(size=(10, 6)).astype(np.float32)),
        t("sc", np.array([0.1], np.float32)),
        t("zp", np.array([3], np.uint8)),
        t("q.weight", r.integers(0, 255, size=(6, 4)).astype(np.uint8)),
        t("shp", np.array([4, 6], np.int64)),
        t("fc3.weight", r.normal(size=(5, 7)).astype(np.float16)),
    ]
    nodes = [
        helper.make_node("Gather", ["emb.weight", "ids"], ["e"], axis=0),
        helper.make_node("Gemm", ["e", "fc1.weight"], ["h"], transB=1),
        helper.make_node("MatMul", ["h", "fc2.weight"], ["h2"]),
        helper.make_node("Conv", ["img", "conv.weight"], ["c"], group=1),
        helper.make_node("DequantizeLinear", ["q.weight", "sc", "zp"], ["dq"]),
        helper.make_node("Transpose", ["dq"], ["dqt"], perm=[1, 0]),
        helper.make_node("Reshape", ["dqt", "shp"], ["dqr"]),
        helper.make_node("MatMul", ["h", "dqr"], ["h3"]),
        helper.make_node("Cast", ["fc3.weight"], ["fc3f"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["h2", "fc3f"], ["h4"], transB=0),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, [3]),
            helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 2, 5, 5]),
        ],
        [helper.make_tensor_value_info("h3", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph)
    if external is not None:  # fc1 and conv in a side file
        data = b""
        for init in model.graph.initializer:
            if init.name in ("fc1.weight", "conv.weight"):
                raw = init.raw_data
                init.ClearField("raw_data")
                init.data_location = TensorProto.EXTERNAL
                for key, value in (
                    ("location", external.name),
                    ("offset", str(len(data))),
                    ("length", str(len(raw))),
                ):
                    init.external_data.add(key=key, value=value)
                data += raw
        external.write_bytes(data)
    return model


ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}


def st_bytes(tensors: dict, header_fn=None) -> bytes:
    """A safetensors file of ``tensors``; ``header_fn`` may rewrite the header dict first."""
    header, data = {}, b""
    for name, a in tensors.items():
        raw = a.tobytes()
        header[name] = {
            "dtype": ST_DTYPES[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    header["__metadata__"] = {"format": "pt"}
    if header_fn is not None:
        header = header_fn(header)
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


_R = np.random.default_rng(2)
ST_TENSORS = {
    "a.weight": _R.normal(size=(6, 4)).astype(np.float32),
    "b.weight": _R.normal(size=(3, 5)).astype(np.float16),
    "c.bias": np.zeros(3, np.float32),
    "ids": np.arange(3, dtype=np.int64),
    "conv.weight": _R.normal(size=(2, 3, 2, 2)).astype(np.float32),
}


# --------------------------------------------------------------------------- mutations


def mutate_bytes(b: bytes, rng: np.random.Generator, *, length_field: int | None = None) -> bytes:
    """One random byte-level mutation of ``b`` (``length_field``: offset of an 8-byte
    little-endian length to corrupt, the safetensors header size)."""
    b = bytearray(b)
    kind = rng.integers(0, 7 if length_field is None else 8)
    if kind == 0:  # bit flips
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(0, len(b))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # special bytes
        for _ in range(rng.integers(1, 5)):
            b[rng.integers(0, len(b))] = int(rng.choice([0, 0xFF, 0x7F, 0x80, 0x01]))
    elif kind == 2:  # truncation
        b = b[: rng.integers(0, len(b))]
    elif kind == 3:  # splice a copy of one chunk elsewhere
        i, j = sorted(rng.integers(0, len(b), 2))
        k = rng.integers(0, len(b))
        b = b[:k] + b[i:j] + b[k:]
    elif kind == 4:  # delete a chunk
        i = rng.integers(0, len(b))
        del b[i : i + rng.integers(1, 64)]
    elif kind == 5:  # a huge protobuf varint (length / tag) anywhere
        i = rng.integers(0, len(b))
        b[i : i + 5] = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
    elif kind == 6:  # swap two chunks
        i, j = sorted(rng.integers(0, len(b), 2))
        n = int(min(rng.integers(1, 32), j - i, len(b) - j))
        b[i : i + n], b[j : j + n] = b[j : j + n], b[i : i + n]
    else:  # the length field
        value = int(rng.choice([0, 1, len(b), len(b) - 8, 2**63, 2**64 - 1, 100_000_001]))
        b[length_field : length_field + 8] = struct.pack("<Q", value % 2**64)
    return bytes(b)


_ODD = [0, -1, 1, 2**31, 2**40, 2**63 - 1, 2**64, 1e300, 2.5, "x", None, True, [], {}, [1, 2]]


def mutate_header(header: dict, rng: np.random.Generator) -> dict:
    """One structured mutation of a safetensors header (dtypes, shapes, offsets, JSON types)."""
    names = [n for n in header if n != "__metadata__"]
    name = names[rng.integers(0, len(names))]
    e = header[name]
    odd = _ODD[rng.integers(0, len(_ODD))]
    kind = rng.integers(0, 13)
    if kind == 0:
        e["dtype"] = str(rng.choice(["F64", "BF16", "I8", "BOOL", "F8_E4M3", "XX", "U64", "C64"]))
    elif kind == 1:
        e["shape"] = [int(rng.integers(0, 9)) for _ in range(rng.integers(0, 5))]
    elif kind == 2:
        e["shape"] = [2**20, 2**20]  # a 4 TB claim
    elif kind == 3:
        e["data_offsets"] = [int(rng.integers(0, 2000)), int(rng.integers(0, 3000))]
    elif kind == 4:
        e["data_offsets"] = [0, e["data_offsets"][1]]  # overlaps the first tensor
    elif kind == 5:
        e[str(rng.choice(["dtype", "shape", "data_offsets"]))] = odd
    elif kind == 6:
        e["shape"][rng.integers(0, len(e["shape"]))] = odd
    elif kind == 7:
        del e[str(rng.choice(["dtype", "shape", "data_offsets"]))]
    elif kind == 8:
        header[name] = odd
    elif kind == 9:
        e["shape"], e["data_offsets"] = [2**32, 2**32], [0, 0]  # 2**64 elements wrap to 0
    elif kind == 10:
        header["__metadata__"] = odd
    elif kind == 11:
        e["data_offsets"][rng.integers(0, 2)] = odd
    else:
        header[f"extra.{rng.integers(0, 9)}.weight"] = dict(e)  # a duplicate range
    return header


def mutate_onnx(model: "onnx.ModelProto", rng: np.random.Generator) -> "onnx.ModelProto":
    """One structured mutation of an ONNX model (a copy)."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    g = m.graph
    inits = list(g.initializer)
    t = inits[rng.integers(0, len(inits))]
    node = g.node[rng.integers(0, len(g.node))]
    kind = rng.integers(0, 10)
    if kind == 0:
        if t.dims:
            t.dims[rng.integers(0, len(t.dims))] = int(rng.choice([0, -1, 3, 2**40, 2**62]))
    elif kind == 1:
        t.data_type = int(rng.integers(0, 30))
    elif kind == 2:
        t.ClearField("raw_data")
        t.float_data.extend([1.0] * int(rng.integers(0, 5)))
    elif kind == 3:
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for key, values in (
            ("location", ["nope.bin", "../../etc/passwd", "", "x" * 300]),
            ("offset", ["0", "-5", "abc", "99999999999"]),
            ("length", ["4", "-1", "zz", "1" * 30]),
        ):
            if rng.random() < 0.8:
                t.external_data.add(key=key, value=str(rng.choice(values)))
    elif kind == 4:
        attrs = [
            helper.make_attribute("perm", [int(x) for x in rng.integers(-3, 5, 3)]),
            helper.make_attribute("group", int(rng.choice([0, -1, 3, 2**40]))),
            helper.make_attribute("axis", int(rng.integers(-5, 5))),
            helper.make_attribute("block_size", int(rng.choice([0, 1, 3, 2**40, -2]))),
            helper.make_attribute("transB", int(rng.integers(-1, 3))),
            helper.make_attribute("group", "str"),
            helper.make_attribute("to", int(rng.integers(0, 30))),
        ]
        del node.attribute[:]
        node.attribute.append(attrs[rng.integers(0, len(attrs))])
    elif kind == 5:
        node.op_type = str(
            rng.choice(
                [
                    "MatMul",
                    "Gemm",
                    "Conv",
                    "ConvTranspose",
                    "Gather",
                    "Reshape",
                    "Transpose",
                    "Cast",
                    "DequantizeLinear",
                    "QuantizeLinear",
                    "Identity",
                    "Constant",
                ]
            )
        )
    elif kind == 6:
        if node.input:
            node.input[rng.integers(0, len(node.input))] = str(
                rng.choice([i.name for i in inits] + ["", "missing", node.output[0]])
            )
    elif kind == 7:
        for init in inits:
            if init.name == "shp":
                target = rng.integers(-3, 2**20, rng.integers(0, 4)).astype(np.int64)
                init.CopyFrom(numpy_helper.from_array(target, "shp"))
    elif kind == 8:
        g.initializer.remove(t)
    else:
        for init in inits:
            if init.name in ("sc", "zp"):
                init.dims.append(int(rng.integers(1, 4)))
    return m


# --------------------------------------------------------------------------- the loop


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def run_case(path: Path) -> str:
    """Load ``path`` and read every layer: "ok" or the rmtkit error type; anything else
    fails the test (as do a slow case and a large allocation)."""
    tracemalloc.reset_peak()
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 4 * CASE_SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tree = load(path)
            for _, w in iter_layers(tree):
                np.asarray(w.values)
        result = "ok"
    except RmtkitError as err:
        result = type(err).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed = time.monotonic() - start
    assert elapsed < CASE_SECONDS, f"{path.name}: {elapsed:.1f} s"
    _, peak = tracemalloc.get_traced_memory()
    assert peak < CASE_BYTES, f"{path.name}: allocated {peak / 2**20:.0f} MB"
    return result


@pytest.fixture
def traced():
    """tracemalloc on and a SIGALRM handler for the duration of a fuzz loop."""
    old = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGALRM, old)


def fuzz(tmp_path: Path, make_case, n: int, suffix: str) -> Counter:
    """Run ``n`` cases ``make_case(i, rng) -> bytes``; return the outcome counts."""
    rng = np.random.default_rng(SEED)
    outcomes: Counter = Counter()
    for i in range(n):
        path = tmp_path / f"case{i}{suffix}"
        path.write_bytes(make_case(i, rng))
        outcomes[run_case(path)] += 1
        path.unlink()
    assert sum(outcomes.values()) == n
    return outcomes


# --------------------------------------------------------------------------- fuzz tests


@pytest.mark.slow
def test_fuzz_onnx_bytes_small_model(tmp_path, traced):
    base = small_onnx().SerializeToString()
    out = fuzz(tmp_path, lambda i, rng: mutate_bytes(base, rng), 600, ".onnx")
    assert out["ok"] > 0 and out["CorruptModelError"] > 0


@pytest.mark.slow
def test_fuzz_onnx_bytes_digits_model(tmp_path, traced):
    base = data_path().read_bytes()
    out = fuzz(tmp_path, lambda i, rng: mutate_bytes(base, rng), 150, ".onnx")
    assert out["ok"] > 0 and out["CorruptModelError"] > 0


@pytest.mark.slow
def test_fuzz_onnx_structure(tmp_path, traced):
    model = small_onnx(external=tmp_path / "weights.bin")
    data = (tmp_path / "weights.bin").read_bytes()

    def case(i, rng):
        if i % 10 == 9:  # the external file itself: truncated or replaced
            (tmp_path / "weights.bin").write_bytes(mutate_bytes(data, rng))
        else:
            (tmp_path / "weights.bin").write_bytes(data)
        return mutate_onnx(model, rng).SerializeToString()

    out = fuzz(tmp_path, case, 600, ".onnx")
    assert out["ok"] > 0 and out["CorruptModelError"] > 0


@pytest.mark.slow
def test_fuzz_safetensors_bytes(tmp_path, traced):
    base = st_bytes(ST_TENSORS)
    out = fuzz(
        tmp_path, lambda i, rng: mutate_bytes(base, rng, length_field=0), 600, ".safetensors"
    )
    assert out["ok"] > 0 and out["CorruptModelError"] > 0


@pytest.mark.slow
def test_fuzz_safetensors_header(tmp_path, traced):
    out = fuzz(
        tmp_path,
        lambda i, rng: st_bytes(ST_TENSORS, lambda h: mutate_header(h, rng)),
        600,
        ".safetensors",
    )
    assert out["ok"] > 0 and out["CorruptModelError"] > 0


@pytest.mark.slow
def test_fuzz_safetensors_index(tmp_path, traced):
    (tmp_path / "a.safetensors").write_bytes(st_bytes(ST_TENSORS))
    index = {"metadata": {}, "weight_map": {k: "a.safetensors" for k in ST_TENSORS}}
    base = json.dumps(index).encode()
    out = fuzz(tmp_path, lambda i, rng: mutate_bytes(base, rng), 150, ".safetensors.index.json")
    assert out["ok"] > 0 and out["CorruptModelError"] > 0


# --------------------------------------------------------------------------- regressions
# Each bug the loop found, as a named case.


def _write_st(path: Path, header_fn) -> Path:
    path.write_bytes(st_bytes(ST_TENSORS, header_fn))
    return path


def _set(name: str, **fields):
    def fn(header):
        header[name].update(fields)
        return header

    return fn


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(shape=[2**32, 2**32], data_offsets=[0, 0]), "needs 73786976294838206464 bytes"),
        (dict(shape=[2**64, 1]), "shape must be a list of integers"),
        (dict(shape=[1e300, 1]), "shape must be a list of integers"),
        (dict(shape=[True, 24]), "shape must be a list of integers"),
        (dict(dtype=["F32"]), "dtype must be a string"),
        (dict(dtype={"a": 1}), "dtype must be a string"),
        (dict(data_offsets=[0, 2**64]), "data_offsets must be"),
        (dict(data_offsets=[50, 10]), "data_offsets must be"),
        (dict(shape=[2**20, 2**20], data_offsets=[0, 16]), "needs 4398046511104 bytes"),
    ],
)
def test_regression_safetensors_header_types(tmp_path, fields, match):
    path = _write_st(tmp_path / "m.safetensors", _set("a.weight", **fields))
    with pytest.raises(CorruptModelError, match=match):
        load(path)


def test_regression_safetensors_overlap_and_metadata(tmp_path):
    path = _write_st(tmp_path / "o.safetensors", _set("b.weight", data_offsets=[0, 30]))
    with pytest.raises(CorruptModelError, match="overlap"):
        load(path)

    def meta(h):
        h["__metadata__"] = [1]
        return h

    with pytest.raises(CorruptModelError, match="__metadata__"):
        load(_write_st(tmp_path / "m.safetensors", meta))
    deep = b"[" * 100_000 + b"]" * 100_000  # RecursionError in json
    path = tmp_path / "d.safetensors"
    path.write_bytes(struct.pack("<Q", len(deep)) + deep)
    with pytest.raises(CorruptModelError, match="invalid JSON"):
        load(path)


def test_one_terabyte_claim_is_refused_before_allocation(tmp_path, traced):
    """A header claiming a 1 TB tensor (shape and offsets consistent) fails on the header."""

    def huge(h):
        h["a.weight"].update(shape=[2**18, 2**20], dtype="F32", data_offsets=[0, 2**40])
        return h

    path = _write_st(tmp_path / "t.safetensors", huge)
    tracemalloc.reset_peak()
    with pytest.raises(CorruptModelError, match="beyond the end of the file"):
        load(path)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20


def test_safetensors_file_vanishing_after_load(tmp_path):
    path = tmp_path / "v.safetensors"
    path.write_bytes(st_bytes(ST_TENSORS))
    tree = load(path)
    path.write_bytes(path.read_bytes()[:200])  # truncated behind the loader's back
    with pytest.raises(CorruptModelError, match="cannot be read"):
        for _, w in iter_layers(tree):
            np.asarray(w.values)


def _onnx_file(path: Path, edit) -> Path:
    model = small_onnx()
    edit(model)
    path.write_bytes(model.SerializeToString())
    return path


def _node(model, op):
    return next(n for n in model.graph.node if n.op_type == op)


def _init(model, name):
    return next(i for i in model.graph.initializer if i.name == name)


def _set_attr(node, name, value):
    del node.attribute[:]
    node.attribute.append(helper.make_attribute(name, value))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: _set_attr(_node(m, "Transpose"), "perm", [0, 3]), "not a permutation"),
        (lambda m: _set_attr(_node(m, "Transpose"), "perm", [1, 1]), "not a permutation"),
        (lambda m: setattr(_init(m, "fc1.weight"), "data_type", 0), "unknown ONNX data type"),
        (lambda m: _set_attr(_node(m, "Conv"), "group", "two"), "must be an integer"),
        (lambda m: _set_attr(_node(m, "Conv"), "group", 0), "group must be >= 1"),
        (lambda m: _set_attr(_node(m, "Cast"), "to", 99), "unknown ONNX data type"),
        (
            lambda m: _init(m, "shp").CopyFrom(
                numpy_helper.from_array(np.array([5, 7], np.int64), "shp")
            ),
            "cannot reshape",
        ),
        (
            lambda m: _init(m, "shp").CopyFrom(
                numpy_helper.from_array(np.array([[4, 6]], np.int64), "shp")
            ),
            "cannot reshape",
        ),
        (
            lambda m: _init(m, "sc").CopyFrom(
                numpy_helper.from_array(np.ones(5, np.float32), "sc")
            ),
            "do not fit the tensor",
        ),
        (lambda m: _init(m, "fc1.weight").dims.__setitem__(0, 9), "holds 192 bytes"),
        (lambda m: _init(m, "fc1.weight").dims.__setitem__(0, -8), "negative dimension"),
        (
            lambda m: (
                _init(m, "fc1.weight").ClearField("raw_data"),
                _init(m, "fc1.weight").float_data.extend([1.0, 2.0]),
            ),
            "stores 2 values",
        ),
    ],
)
def test_regression_onnx_graph_checks(tmp_path, edit, match):
    with pytest.raises(CorruptModelError, match=match):
        load(_onnx_file(tmp_path / "m.onnx", edit))


@pytest.mark.parametrize(
    "entries, error, match",
    [
        ({"location": "w.bin", "offset": "abc"}, CorruptModelError, "offset must be an integer"),
        ({"location": "w.bin", "length": "-1"}, CorruptModelError, "length must be an integer"),
        ({"location": "../../etc/passwd"}, CorruptModelError, "relative path inside"),
        ({"location": "/etc/passwd"}, CorruptModelError, "relative path inside"),
        ({"location": "x" * 5000}, MissingDataError, "does not exist"),
        ({"offset": "0"}, CorruptModelError, "no location"),
    ],
)
def test_regression_onnx_external_data_entries(tmp_path, entries, error, match):
    def edit(model):
        t = _init(model, "fc1.weight")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for key, value in entries.items():
            t.external_data.add(key=key, value=value)

    (tmp_path / "w.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(error, match=match):
        load(_onnx_file(tmp_path / "m.onnx", edit))


def test_regression_huge_block_size_does_not_allocate(tmp_path, traced):
    """A DequantizeLinear block_size of 2**40 used to make np.repeat allocate terabytes."""

    def edit(model):
        dq = _node(model, "DequantizeLinear")
        _set_attr(dq, "block_size", 2**40)
        dq.attribute.append(helper.make_attribute("axis", 0))
        _init(model, "sc").CopyFrom(numpy_helper.from_array(np.full((1, 4), 0.1, np.float32), "sc"))
        _init(model, "zp").CopyFrom(numpy_helper.from_array(np.full((1, 4), 3, np.uint8), "zp"))

    tracemalloc.reset_peak()
    tree = load(_onnx_file(tmp_path / "m.onnx", edit))
    for _, w in iter_layers(tree):
        np.asarray(w.values)
    assert tracemalloc.get_traced_memory()[1] < 8 << 20


def test_regression_unreadable_typed_data_is_a_typed_error(tmp_path):
    """Tensor data that passes the load-time checks but that onnx cannot decode."""

    def edit(model):
        t = _init(model, "fc3.weight")  # float16 stored in int32_data
        t.ClearField("raw_data")
        t.int32_data.extend([2**31 - 1] * 35)

    tree = load(_onnx_file(tmp_path / "m.onnx", edit))
    for _, w in iter_layers(tree):
        try:
            np.asarray(w.values)
        except RmtkitError:
            pass


def test_overlong_file_names_are_missing_files(tmp_path):
    with pytest.raises(MissingDataError):
        load(tmp_path / ("x" * 5000 + ".onnx"))
    with pytest.raises(MissingDataError):
        load("x" * 5000 + ".safetensors")
