"""Packed LLM checkpoints (safetensors / torch): GPTQ, AWQ, bitsandbytes, scaled int8 / FP8.

The test checkpoints are packed here by transcriptions of the reference packers (AutoGPTQ
``QuantLinear.pack``, AutoAWQ ``WQLinear_GEMM.from_linear``), from known float weights and
codes; rmtkit must give back ``(codes - zero) * scale`` exactly, and never a packed int32
matrix.
"""

import json

import numpy as np
import pytest
from _deps import require

st = require("safetensors.numpy")
torch = require("torch")
ml_dtypes = require("ml_dtypes")

import rmtkit  # noqa: E402
from rmtkit.collection import iter_layers  # noqa: E402
from rmtkit.errors import RowWarning  # noqa: E402

RNG = np.random.default_rng(0)
N_IN, N_OUT, GROUP, BITS = 256, 96, 64, 4


def _quantize(w_t, group, bits=BITS):
    """Asymmetric min/max quantization of ``w_t`` ``(in, out)`` per group of ``group`` input
    rows and output column: codes ``(in, out)``, zero points and scales ``(groups, out)``."""
    g = w_t.reshape(-1, group, w_t.shape[1])
    lo, hi = g.min(axis=1), g.max(axis=1)
    scales = ((hi - lo) / (2**bits - 1)).astype(np.float16)
    zeros = np.clip(np.round(-lo / scales.astype(np.float32)), 0, 2**bits - 1).astype(np.int64)
    s = np.repeat(scales.astype(np.float32), group, axis=0)
    z = np.repeat(zeros, group, axis=0)
    codes = np.clip(np.round(w_t / s) + z, 0, 2**bits - 1).astype(np.int64)
    # C order: safetensors.numpy writes an array's memory as it lies
    return tuple(np.ascontiguousarray(a) for a in (codes, zeros, scales))


def _expected(codes, zeros, scales, g_idx):
    """``(out, in)``: (codes - zero) * scale of each input row's group."""
    return ((codes - zeros[g_idx]) * scales.astype(np.float32)[g_idx]).T


def gptq_pack(codes, zeros, bits=BITS):
    """AutoGPTQ ``QuantLinear.pack`` (qlinear_cuda_old), as written there: codes packed along
    *in* into int32 rows, zero points stored minus one, packed along *out*."""
    intweight = codes.astype(np.uint32)
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint32)
    i = row = 0
    while row < qweight.shape[0]:
        for j in range(i, i + (32 // bits)):
            qweight[row] |= intweight[j] << (bits * (j - i))
        i += 32 // bits
        row += 1
    z = (zeros - 1).astype(np.uint32)  # "zeros -= 1" (the v1 checkpoint format)
    qzeros = np.zeros((z.shape[0], z.shape[1] // 32 * bits), dtype=np.uint32)
    i = col = 0
    while col < qzeros.shape[1]:
        for j in range(i, i + (32 // bits)):
            qzeros[:, col] |= z[:, j] << (bits * (j - i))
        i += 32 // bits
        col += 1
    return qweight.astype(np.int32), qzeros.astype(np.int32)


def awq_pack(codes, bits=BITS):
    """AutoAWQ ``WQLinear_GEMM.from_linear``: columns packed along *out* in the order
    ``[0, 2, 4, 6, 1, 3, 5, 7]`` (also used for the zero points)."""
    pack_num = 32 // bits
    out = np.zeros((codes.shape[0], codes.shape[1] // 32 * bits), dtype=np.uint32)
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    for col in range(codes.shape[1] // pack_num):
        for i in range(pack_num):
            out[:, col] |= codes[:, col * pack_num + order_map[i]].astype(np.uint32) << (i * bits)
    return out.astype(np.int32)


def _layer(tree, path):
    return dict(iter_layers(tree))[path]


@pytest.fixture(scope="module")
def float_weight():
    return (RNG.standard_t(3, size=(N_OUT, N_IN)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_gptq(tmp_path, float_weight, fmt):
    codes, zeros, scales = _quantize(float_weight.T, GROUP)
    qweight, qzeros = gptq_pack(codes, zeros)
    if fmt == "gptq_v2":  # v2 stores the zero points themselves
        qzeros = gptq_pack(codes, zeros + 1)[1]
    g_idx = (np.arange(N_IN) // GROUP).astype(np.int32)
    st.save_file(
        {
            "model.layers.0.mlp.up_proj.qweight": qweight,
            "model.layers.0.mlp.up_proj.qzeros": qzeros,
            "model.layers.0.mlp.up_proj.scales": scales,
            "model.layers.0.mlp.up_proj.g_idx": g_idx,
            "model.layers.0.mlp.up_proj.bias": np.zeros(N_OUT, np.float16),
        },
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "quantize_config.json").write_text(
        json.dumps({"bits": 4, "group_size": GROUP, "checkpoint_format": fmt})
    )
    tree = rmtkit.load(tmp_path / "model.safetensors")
    w = _layer(tree, "model/layers/0/mlp/up_proj")
    assert w.shape == (N_OUT, N_IN) and w.attrs["op"] == "GPTQ"
    assert w.attrs["quant"] == "GPTQ int4 g_idx"
    assert w.attrs["source"] == "model.layers.0.mlp.up_proj.qweight"
    np.testing.assert_array_equal(w.values, _expected(codes, zeros, scales, g_idx))
    step = np.repeat(scales.astype(np.float32), GROUP, axis=0).T
    # half a step of rounding, plus half a step of the rounded zero point at the clipped ends
    assert np.all(np.abs(w.values - float_weight) <= step + 1e-6)


def test_gptq_act_order_g_idx(tmp_path, float_weight):
    """desc_act: input rows assigned to groups in a permuted order (g_idx)."""
    perm = RNG.permutation(N_IN)
    g_idx = np.empty(N_IN, np.int32)
    g_idx[perm] = np.arange(N_IN) // GROUP
    codes, zeros, scales = _quantize(float_weight.T[perm], GROUP)
    codes_in_order = np.empty_like(codes)
    codes_in_order[perm] = codes
    qweight, qzeros = gptq_pack(codes_in_order, zeros)
    st.save_file(
        {"fc.qweight": qweight, "fc.qzeros": qzeros, "fc.scales": scales, "fc.g_idx": g_idx},
        str(tmp_path / "m.safetensors"),
    )
    w = _layer(rmtkit.load(tmp_path / "m.safetensors"), "fc")
    np.testing.assert_array_equal(w.values, _expected(codes_in_order, zeros, scales, g_idx))


def test_awq(tmp_path, float_weight):
    codes, zeros, scales = _quantize(float_weight.T, GROUP)
    st.save_file(
        {
            "layers.1.self_attn.o_proj.qweight": awq_pack(codes),
            "layers.1.self_attn.o_proj.qzeros": awq_pack(zeros),
            "layers.1.self_attn.o_proj.scales": scales,
        },
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 64}})
    )
    w = _layer(rmtkit.load(tmp_path / "model.safetensors"), "layers/1/self_attn/o_proj")
    assert w.attrs["quant"] == "AWQ int4 group 64"
    g = np.arange(N_IN) // GROUP
    np.testing.assert_array_equal(w.values, _expected(codes, zeros, scales, g))


def test_bitsandbytes_int8_and_a_float_layer_in_a_torch_file(tmp_path, float_weight):
    scb = np.abs(float_weight).max(axis=1)
    q = np.round(float_weight / scb[:, None] * 127).astype(np.int8)
    state = {
        "emb.weight": torch.from_numpy(np.ascontiguousarray(float_weight.T)),
        "fc.weight": torch.from_numpy(q),
        "fc.SCB": torch.from_numpy(scb),
    }
    torch.save(state, tmp_path / "model.pt")
    tree = rmtkit.load(tmp_path / "model.pt")
    w = _layer(tree, "fc")
    assert w.attrs["quant"] == "int8 per-channel" and w.attrs["op"] == "Linear8bitLt"
    np.testing.assert_array_equal(w.values, q.astype(np.float32) * (scb[:, None] / 127))
    assert _layer(tree, "emb").attrs["quant"] == ""


def test_scaled_int8_and_fp8_blocks(tmp_path, float_weight):
    """compressed-tensors int8 (per-channel ``weight_scale``) and DeepSeek-style FP8 with a
    128 x 128 ``weight_scale_inv`` grid (multiplied, despite its name)."""
    ch = np.abs(float_weight).max(axis=1, keepdims=True) / 127
    q8 = np.round(float_weight / ch).astype(np.int8)
    big = (RNG.standard_normal((200, 300)) * 0.1).astype(np.float32)
    inv = np.array([[0.5, 2.0, 1.0], [4.0, 0.25, 1.5]], np.float32)
    fp8 = (big / np.repeat(np.repeat(inv, 128, 0), 128, 1)[:200, :300]).astype(
        ml_dtypes.float8_e4m3fn
    )
    st.save_file(
        {
            "a.weight": q8,
            "a.weight_scale": ch.astype(np.float32),
            "b.weight": fp8,
            "b.weight_scale_inv": inv,
        },
        str(tmp_path / "m.safetensors"),
    )
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"weight_block_size": [128, 128]}})
    )
    tree = rmtkit.load(tmp_path / "m.safetensors")
    a, b = _layer(tree, "a"), _layer(tree, "b")
    assert (
        a.attrs["quant"] == "int8 per-channel" and b.attrs["quant"] == "float8_e4m3fn block 128x128"
    )
    np.testing.assert_array_equal(a.values, q8.astype(np.float32) * ch.astype(np.float32))
    grid = np.repeat(np.repeat(inv, 128, 0), 128, 1)[:200, :300]
    np.testing.assert_array_equal(b.values, fp8.astype(np.float32) * grid)


def test_unreadable_packings_are_flagged_rows_never_matrices(tmp_path, float_weight):
    """bitsandbytes 4-bit, a qweight without scales and int8 codes without a scale: rows with
    ``unsupported-quantization``; the float layer beside them is analysed as usual."""
    state = json.dumps({"shape": [N_OUT, N_IN], "quant_type": "nf4", "blocksize": 64}).encode()
    tensors = {
        "q4.weight": RNG.integers(0, 255, (N_OUT * N_IN // 2, 1), dtype=np.uint8),
        "q4.weight.absmax": np.ones(N_OUT * N_IN // 64, np.float32),
        "q4.weight.quant_map": np.linspace(-1, 1, 16).astype(np.float32),
        "q4.weight.quant_state.bitsandbytes__nf4": np.frombuffer(state, np.uint8).copy(),
        "lone.qweight": RNG.integers(-(2**31), 2**31 - 1, (32, 96), dtype=np.int32),
        "codes.weight": RNG.integers(-128, 127, (96, 128), dtype=np.int8),
        "fc.weight": float_weight,
    }
    st.save_file(tensors, str(tmp_path / "m.safetensors"))
    d = rmtkit.analyze(tmp_path / "m.safetensors", progress=False)
    rows = dict(zip(d["name"].values, d["warning"].values, strict=True))
    u = RowWarning.UNSUPPORTED_QUANTIZATION
    assert rows["q4"] == u.because("bitsandbytes nf4")
    assert rows["lone"] == u.because("packed qweight (no scales / layout)")
    assert rows["codes"] == u.because("int8 weight without scales")
    assert RowWarning.of(rows["fc"]) in (RowWarning.NONE, RowWarning.OVER_TRAINED)
    q4 = d.isel(layer=list(d["name"].values).index("q4"))
    assert (int(q4["N"]), int(q4["M"])) == (N_IN, N_OUT)  # the shape of its quant state
    for name in ("q4", "lone", "codes"):
        row = d.isel(layer=list(d["name"].values).index(name))
        assert np.isnan(row["alpha"].item()) and np.isnan(row["log_norm"].item())
    assert set(d["name"].values) == {"q4", "lone", "codes", "fc"}
