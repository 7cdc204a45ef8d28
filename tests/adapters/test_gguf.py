"""GGUF adapter: files written here by gguf's own GGUFWriter, read back through rmtkit.

Round trips from known float weights for the types gguf can quantize; for the K-quants (which
gguf dequantizes but cannot quantize), blocks of valid random bytes compared with gguf's own
dequantization of the same bytes read by gguf's own reader.
"""

import numpy as np
import pytest
from _deps import require

gguf = require("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402

import rmtkit  # noqa: E402
from rmtkit.cli import main  # noqa: E402
from rmtkit.collection import iter_layers  # noqa: E402
from rmtkit.errors import CorruptModelError, MissingDataError, RowWarning  # noqa: E402

RNG = np.random.default_rng(0)
DIM, VOCAB, FF = 256, 320, 512


def _w(*shape):
    """Heavy-tailed float weights (Student t), the kind a trained layer has."""
    return (RNG.standard_t(3, size=shape) * 0.02).astype(np.float32)


#: the types gguf quantizes, and the worst error against the block's largest |w|: half a
#: quantization step (absmax/127 for Q8_0, range/31 for Q5_1 with range <= 2 absmax; Q4_0
#: below) plus the fp16 rounding of the block scale (2**-9 of it); F16 / BF16: their rounding
ROUND_TRIP = {
    T.F16: 2**-11,
    T.BF16: 2**-8,
    T.Q8_0: 0.5 / 127 + 2**-9,
    T.Q5_1: 1 / 31 + 2**-9,
    T.Q4_0: 1 / 8 + 2**-9,  # codes -8..7 of step absmax/8: +absmax itself lands on 7 steps
}
K_QUANTS = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)


def _k_blocks(qtype, rows, cols):
    """Valid random blocks of a K-quant: every byte below 0x3C, so each fp16 block scale is a
    finite positive number below 1 (exponent field < 15)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return RNG.integers(0, 0x3C, size=(rows, cols // block * size), dtype=np.uint8)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A llama-like GGUF: token embedding, one block of every round-trip and K-quant type,
    a norm (not a layer), a 3-expert MoE stack and the output head; returns (path, floats)."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    floats = {}

    def add(name, array, qtype):
        floats[name] = array
        w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)

    add("token_embd.weight", _w(VOCAB, DIM), T.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(DIM, np.float32))
    for i, qtype in enumerate(ROUND_TRIP):
        add(f"blk.0.rt{i}.weight", _w(FF, DIM), qtype)
    for qtype in K_QUANTS:
        w.add_tensor(
            f"blk.0.{qtype.name.lower()}.weight", _k_blocks(qtype, FF, DIM), raw_dtype=qtype
        )
    experts = _w(3, FF, DIM)
    floats["blk.0.ffn_up_exps.weight"] = experts
    w.add_tensor(
        "blk.0.ffn_up_exps.weight", gguf.quants.quantize(experts, T.Q8_0), raw_dtype=T.Q8_0
    )
    add("output.weight", _w(VOCAB, DIM), T.F16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, floats


def _gguf_dequantized(path):
    """name -> gguf's own dequantization of each stored tensor (its reader, its code)."""
    reader = gguf.GGUFReader(str(path))
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}


def test_layers_kinds_paths_and_quant(model):
    path, _ = model
    tree = rmtkit.load(path)
    layers = dict(iter_layers(tree))
    assert list(layers)[:2] == ["token_embd", "blk/0/rt0"]
    assert "blk/0/attn_norm" not in layers  # 1-D: a norm, not a layer
    assert layers["token_embd"].attrs["kind"] == "embedding"
    assert layers["token_embd"].dims == ("vocab", "dim")
    assert (layers["output"].attrs["kind"], layers["output"].attrs["op"]) == ("dense", "output")
    assert [p for p in layers if "exps" in p] == [f"blk/0/ffn_up_exps/{e}" for e in range(3)]
    assert layers["blk/0/q4_k"].attrs["quant"] == "Q4_K"
    assert layers["blk/0/q4_k"].attrs["source"] == "blk.0.q4_k.weight"
    assert layers["output"].attrs["quant"] == ""  # F16 is a float type
    assert layers["blk/0/rt2"].attrs["quant"] == "Q8_0"


def test_every_layer_is_gguf_s_own_dequantization(model):
    path, _ = model
    theirs = _gguf_dequantized(path)
    for layer_path, w in iter_layers(rmtkit.load(path)):
        source = w.attrs["source"]
        want = theirs[source]
        if "source_slice" in w.attrs:
            want = want[int(w.attrs["source_slice"].split(":")[0])]
        np.testing.assert_array_equal(np.asarray(w.values), want, err_msg=layer_path)


@pytest.mark.parametrize("i, qtype", list(enumerate(ROUND_TRIP)), ids=[t.name for t in ROUND_TRIP])
def test_round_trip_from_known_floats(model, i, qtype):
    """Quantized by gguf from known weights, read back within the type's rounding bound."""
    path, floats = model
    w = np.asarray(rmtkit.load(path)[f"blk/0/rt{i}"]["W"].values)
    want = floats[f"blk.0.rt{i}.weight"]
    blocks = np.abs(want).reshape(FF, -1, 32).max(axis=-1, keepdims=True)
    err = np.abs(w - want).reshape(FF, -1, 32) / blocks
    assert err.max() <= ROUND_TRIP[qtype]


def test_analyze_gguf_file_and_cli(model, capsys):
    path, _ = model
    d = rmtkit.analyze(path, progress=False)
    assert str(d["quant"].values[0]) == "Q8_0"
    assert np.isfinite(d["alpha"].values).sum() >= 10
    assert main(["analyze", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "blk/0/q6_k" in out and "token_embd" in out


def test_unsupported_type_is_a_flagged_row(tmp_path, monkeypatch):
    """A type the installed gguf cannot dequantize: a row with the warning, never read."""
    from rmtkit.adapters import gguf as agguf

    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(_w(64, 256), T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("blk.0.attn_k.weight", _k_blocks(T.Q4_K, 64, 256), raw_dtype=T.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    monkeypatch.setitem(agguf._SUPPORTED, T.Q4_K, False)
    d = rmtkit.analyze(path, progress=False)
    assert list(d["warning"].values)[1] == RowWarning.UNSUPPORTED_QUANTIZATION.because("GGUF Q4_K")
    assert np.isnan(d["alpha"].values[1]) and np.isfinite(d["log_norm"].values[0])


@pytest.mark.bad_input
def test_bad_files(tmp_path):
    with pytest.raises(MissingDataError):
        rmtkit.load(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(CorruptModelError, match="bad.gguf"):
        rmtkit.load(bad)
    (tmp_path / "text.gguf").write_text("not a model")
    with pytest.raises(CorruptModelError):
        rmtkit.load(tmp_path / "text.gguf")
