r"""Quantization schemes as numpy: stored codes + scales (+ zero points) -> the effective weight.

Framework-free; shared by the ONNX, safetensors / torch and GGUF adapters. Every function returns
the float weight the runtime of that format computes with (docs/math.md §10):

.. math:: W = (q - z)\,s,

with the scale :math:`s` and zero point :math:`z` broadcast per tensor, per channel (one value
per index of an axis) or per block (one value per ``block`` consecutive indices of an axis),
and the codes :math:`q` unpacked from their storage (several codes per byte or per int32).

Inconsistent parameters (a scale of the wrong length for its axis, a block size that does not
fit the dimension, a zero or non-finite scale) raise :class:`rmtkit.errors.CorruptModelError`
naming the tensor; the adapters call these functions when a layer is *read*, so one bad layer
becomes that row's ``read-failed`` warning and the other layers are still analysed.

:func:`label` writes the ``quant`` attribute of a layer node (``"int8 per-channel"``,
``"int4 block 32"``, ``"GPTQ int4 group 128"``, ``""`` for float weights).
"""

import numpy as np

from rmtkit.errors import CorruptModelError

__all__ = [
    "awq_weight",
    "bnb_int8_weight",
    "check_scale",
    "expand_groups",
    "gather_block_quantized_weight",
    "gptq_weight",
    "label",
    "matmul_nbits_weight",
    "unpack_bits",
    "unpack_int32",
]


def label(dtype: str, scheme: str = "tensor", block: int = 0) -> str:
    """The ``quant`` attribute: ``"<dtype> per-tensor"``, ``"<dtype> per-channel"`` or
    ``"<dtype> block <n>"`` (``scheme`` one of ``"tensor"``, ``"channel"``, ``"block"``)."""
    if scheme == "block":
        return f"{dtype} block {int(block)}"
    return f"{dtype} per-{scheme}"


def check_scale(scale: np.ndarray, what: str) -> np.ndarray:
    """``scale`` as float32 (float64 kept), or CorruptModelError naming ``what`` when an entry is
    zero or not finite: such a scale maps every code to 0 or NaN, not to a weight."""
    scale = np.asarray(scale)
    if scale.dtype != np.float64:
        scale = scale.astype(np.float32)
    bad = ~np.isfinite(scale) | (scale == 0)
    if np.any(bad):
        kind = "zero" if np.any(scale == 0) else "non-finite"
        raise CorruptModelError(
            f"{what}: {int(np.sum(bad))} of {scale.size} scales are {kind}; a quantization "
            "scale must be finite and nonzero"
        )
    return scale


def expand_groups(param: np.ndarray, index: np.ndarray, axis: int, what: str) -> np.ndarray:
    """``param`` taken along ``axis`` at ``index`` (one group index per position of that axis):
    blocks (``index = arange(n) // block``) and act-order groups (GPTQ / MatMulNBits ``g_idx``).
    CorruptModelError naming ``what`` when an index falls outside ``param``."""
    index = np.asarray(index)
    n_groups = param.shape[axis]
    if index.size and (index.min() < 0 or index.max() >= n_groups):
        bad = int(index.max()) if index.max() >= n_groups else int(index.min())
        raise CorruptModelError(
            f"{what}: group index {bad} outside the {n_groups} groups of its scales"
        )
    return np.take(param, index, axis=axis)


def unpack_bits(packed: np.ndarray, bits: int, count: int, what: str) -> np.ndarray:
    """Codes of ``bits`` bits packed along the last axis of a uint8 array, low-order bits first
    (the layout of ``MatMulNBits``, ``GatherBlockQuantized`` and ONNX int4): the first
    ``count`` codes of each row, as uint8."""
    packed = np.asarray(packed, np.uint8)
    if bits not in (1, 2, 4, 8):
        raise CorruptModelError(f"{what}: {bits}-bit codes do not pack into whole bytes")
    per_byte = 8 // bits
    if packed.shape[-1] * per_byte < count:
        raise CorruptModelError(
            f"{what}: {packed.shape[-1]} bytes per row hold {packed.shape[-1] * per_byte} "
            f"{bits}-bit codes, {count} are needed"
        )
    if bits == 8:
        return packed[..., :count]
    codes = np.empty((*packed.shape[:-1], packed.shape[-1] * per_byte), np.uint8)
    mask = np.uint8((1 << bits) - 1)
    for i in range(per_byte):  # code i of each byte: bits [i*bits, (i+1)*bits)
        codes[..., i::per_byte] = (packed >> np.uint8(i * bits)) & mask
    return codes[..., :count]


def unpack_int32(packed: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Codes of ``bits`` bits packed into int32 words along ``axis``, code ``i`` of a word at
    bits ``[i*bits, (i+1)*bits)`` (GPTQ and AWQ): ``32 // bits`` codes per word, as int16."""
    packed = np.asarray(packed).astype(np.int64) & 0xFFFFFFFF  # the word's bits, unsigned
    shifts = np.arange(0, 32, bits, dtype=np.int64)
    moved = np.moveaxis(packed, axis, -1)
    codes = (moved[..., None] >> shifts) & ((1 << bits) - 1)
    codes = codes.reshape(*moved.shape[:-1], -1)
    return np.moveaxis(codes, -1, axis).astype(np.int16)


def _need(shape: tuple, want: tuple, name: str, what: str) -> None:
    if tuple(shape) != tuple(want):
        raise CorruptModelError(f"{what}: {name} has shape {tuple(shape)}, expected {tuple(want)}")


def matmul_nbits_weight(
    b: np.ndarray,
    scales: np.ndarray,
    zero_points: np.ndarray | None,
    g_idx: np.ndarray | None,
    *,
    k: int,
    n: int,
    bits: int,
    block_size: int,
    what: str,
) -> np.ndarray:
    r"""The ``(N, K)`` weight of an ONNX Runtime ``com.microsoft.MatMulNBits`` node (its
    ``(K, N)`` right-hand matrix, transposed).

    ``B`` is uint8 ``(N, k_blocks, blob)``, ``blob = block_size * bits / 8``, ``k_blocks =
    ceil(K / block_size)``, codes packed low bits first along K; ``scales`` ``(N, k_blocks)``
    (or flat); ``zero_points`` either packed uint8 ``(N, ceil(k_blocks * bits / 8))`` or
    unpacked in the scales' type ``(N, k_blocks)``, default :math:`2^{bits-1}`; ``g_idx`` (K,)
    the block of each input row (act-order), default ``k // block_size``:
    :math:`W_{nk} = (q_{nk} - z_{n,g(k)})\,s_{n,g(k)}` (contrib-op spec of onnxruntime,
    ``docs/ContribOperators.md#com.microsoft.MatMulNBits``; docs/math.md §10).
    """
    if bits not in (2, 4, 8) or block_size < 16 or block_size & (block_size - 1):
        raise CorruptModelError(
            f"{what}: bits={bits}, block_size={block_size}; MatMulNBits needs bits in 2, 4, 8 "
            "and a power-of-two block_size >= 16"
        )
    k_blocks = -(-k // block_size)
    blob = block_size * bits // 8
    _need(np.shape(b), (n, k_blocks, blob), "B", what)
    scales = check_scale(np.reshape(scales, -1), what)
    if scales.size != n * k_blocks:
        raise CorruptModelError(
            f"{what}: {scales.size} scales for N={n} x {k_blocks} blocks of {block_size}"
        )
    scales = scales.reshape(n, k_blocks)
    if zero_points is None:
        zp = np.full((n, k_blocks), float(1 << (bits - 1)), np.float32)
    elif np.asarray(zero_points).dtype == np.uint8:
        per_row = -(-k_blocks * bits // 8)
        zp_packed = np.reshape(zero_points, -1)
        if zp_packed.size != n * per_row:
            raise CorruptModelError(
                f"{what}: {zp_packed.size} packed zero points, expected {n * per_row}"
            )
        zp = unpack_bits(zp_packed.reshape(n, per_row), bits, k_blocks, what).astype(np.float32)
    else:
        zp = np.asarray(zero_points, np.float32).reshape(-1)
        if zp.size != n * k_blocks:
            raise CorruptModelError(f"{what}: {zp.size} zero points, expected {n * k_blocks}")
        zp = zp.reshape(n, k_blocks)
    if g_idx is None or np.size(g_idx) == 0:  # block j holds k = jB ... jB + B - 1
        codes = unpack_bits(np.reshape(b, (n, k_blocks, blob)), bits, block_size, what)
        w = codes.astype(np.float32)
        w -= zp[:, :, None]  # in place: no (N, K) temporaries
        w *= scales[:, :, None]
        return w.reshape(n, k_blocks * block_size)[:, :k]
    group = np.asarray(g_idx, np.int64).reshape(-1)
    if group.size != k:
        raise CorruptModelError(f"{what}: g_idx has {group.size} entries, K={k}")
    codes = unpack_bits(np.reshape(b, (n, k_blocks * blob)), bits, k, what).astype(np.float32)
    s = expand_groups(scales, group, 1, what)
    z = expand_groups(zp, group, 1, what)
    return (codes - z) * s


def gather_block_quantized_weight(
    data: np.ndarray,
    scales: np.ndarray,
    zero_points: np.ndarray | None,
    *,
    bits: int,
    block_size: int,
    quantize_axis: int,
    what: str,
) -> np.ndarray:
    r"""The 2-D table of an ONNX Runtime ``com.microsoft.GatherBlockQuantized`` node.

    ``data`` is int4 / uint4 (one code per element) or uint8 (``bits`` 2, 4, 8, codes packed
    low bits first along the last axis); ``scales`` has ``data``'s logical shape with
    ``ceil(dim / block_size)`` along ``quantize_axis``; ``zero_points`` the codes' type, packed
    like ``data``, default 0 for int4 / uint4 and :math:`2^{bits-1}` for uint8:
    :math:`W = (q - z)\,s` blockwise (docs/math.md §10).
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise CorruptModelError(f"{what}: a {data.ndim}-D table; an embedding is 2-D")
    packed = data.dtype == np.uint8 and bits < 8
    if data.dtype == np.uint8:
        per_byte = 8 // bits if bits in (2, 4, 8) else 0
        if not per_byte:
            raise CorruptModelError(f"{what}: bits={bits}; uint8 data packs 2, 4 or 8 bits")
        shape = (data.shape[0], data.shape[1] * per_byte)
        codes = unpack_bits(data, bits, shape[1], what) if packed else data
        default_zp = float(1 << (bits - 1))
    else:
        shape = data.shape
        codes = data
        default_zp = 0.0
    axis = quantize_axis % 2
    if block_size < 1:
        raise CorruptModelError(f"{what}: block_size={block_size} must be >= 1")
    n_blocks = -(-shape[axis] // block_size)
    want = list(shape)
    want[axis] = n_blocks
    scales = check_scale(scales, what)
    _need(scales.shape, want, "scales", what)
    if zero_points is None:
        zp = np.full(want, default_zp, np.float32)
    else:
        zp = np.asarray(zero_points)
        if packed:
            zp = unpack_bits(zp, bits, want[1], what)
        zp = zp.astype(np.float32)
        _need(zp.shape, want, "zero_points", what)
    group = np.arange(shape[axis]) // block_size
    return (codes.astype(np.float32) - expand_groups(zp, group, axis, what)) * expand_groups(
        scales, group, axis, what
    )


def gptq_weight(
    qweight: np.ndarray,
    qzeros: np.ndarray | None,
    scales: np.ndarray,
    g_idx: np.ndarray | None,
    *,
    bits: int,
    zero_offset: int = 1,
    what: str,
) -> np.ndarray:
    r"""The ``(out, in)`` weight of a GPTQ-packed linear layer (AutoGPTQ / GPTQModel,
    Hugging Face ``GPTQConfig``).

    Layout (AutoGPTQ ``nn_modules/qlinear`` ``pack`` / reference dequantization): ``qweight``
    int32 ``(in * bits / 32, out)``, codes packed along *in*, code ``i`` of a word at bits
    ``i*bits``; ``qzeros`` int32 ``(groups, out * bits / 32)`` packed along *out*; ``scales``
    ``(groups, out)``; ``g_idx`` ``(in,)`` the group of each input row (default ``i //
    (in / groups)``). :math:`W^\top_{ij} = (q_{ij} - z_{g(i),j})\,s_{g(i),j}` with
    :math:`z = (z_{\rm stored} + c) \bmod 2^{bits}`, :math:`c` = ``zero_offset``: 1 for the
    original ``checkpoint_format="gptq"`` (zero points stored minus one), 0 for ``"gptq_v2"``
    (docs/math.md §10).
    """
    if bits not in (2, 4, 8):
        raise CorruptModelError(f"{what}: GPTQ bits={bits}; rmtkit reads 2, 4 and 8")
    scales = check_scale(scales, what)
    if scales.ndim != 2:
        raise CorruptModelError(f"{what}: scales must be 2-D (groups, out), got {scales.shape}")
    groups, out = scales.shape
    codes = unpack_int32(qweight, bits, 0)  # (in, out)
    if codes.shape[1] != out:
        raise CorruptModelError(
            f"{what}: qweight {np.shape(qweight)} does not match scales {scales.shape}"
        )
    n_in = codes.shape[0]
    if qzeros is None:
        zeros = np.full((groups, out), float(1 << (bits - 1)), np.float32)
    else:
        zeros = unpack_int32(qzeros, bits, 1)[:, :out]
        _need(zeros.shape, (groups, out), "unpacked qzeros", what)
        # the reference adds the offset to the unpacked code, then masks (a stored 2**bits - 1
        # is zero point 0 in the v1 format)
        zeros = ((zeros + zero_offset) & ((1 << bits) - 1)).astype(np.float32)
    if g_idx is None:
        if n_in % groups:
            raise CorruptModelError(f"{what}: {n_in} input rows do not split into {groups} groups")
        group = np.arange(n_in) // (n_in // groups)
    else:
        group = np.asarray(g_idx, np.int64).reshape(-1)
        if group.size != n_in:
            raise CorruptModelError(f"{what}: g_idx has {group.size} entries, {n_in} input rows")
    w = (codes.astype(np.float32) - expand_groups(zeros, group, 0, what)) * expand_groups(
        scales, group, 0, what
    )
    return np.ascontiguousarray(w.T)


#: AutoAWQ packs the 8 codes of a word in the order ``[0, 2, 4, 6, 1, 3, 5, 7]``
#: (``awq/utils/packing_utils.py``: ``AWQ_ORDER``); reading word bits ``0..7`` gives columns
#: ``AWQ_ORDER``, so column ``j`` is at bit slot ``AWQ_REVERSE_ORDER[j]``.
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)


def awq_weight(
    qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, *, bits: int, what: str
) -> np.ndarray:
    r"""The ``(out, in)`` weight of an AWQ-packed linear layer (AutoAWQ ``WQLinear_GEMM``).

    Layout (AutoAWQ ``awq/utils/packing_utils.py``, ``dequantize_gemm``): ``qweight`` int32
    ``(in, out * bits / 32)`` and ``qzeros`` int32 ``(groups, out * bits / 32)``, codes packed
    along *out* in the interleaved order :data:`AWQ_REVERSE_ORDER`; ``scales`` ``(groups,
    out)``; group ``i // (in / groups)``:
    :math:`W^\top_{ij} = (q_{ij} - z_{g(i),j})\,s_{g(i),j}` (docs/math.md §10).
    """
    if bits != 4:
        raise CorruptModelError(f"{what}: AWQ bits={bits}; the GEMM layout is 4-bit")
    scales = check_scale(scales, what)
    if scales.ndim != 2:
        raise CorruptModelError(f"{what}: scales must be 2-D (groups, out), got {scales.shape}")
    groups, out = scales.shape
    per_word = 32 // bits
    order = (np.arange(out).reshape(-1, per_word)[:, list(AWQ_REVERSE_ORDER)]).reshape(-1)
    codes = unpack_int32(qweight, bits, 1)
    zeros = unpack_int32(qzeros, bits, 1)
    if codes.shape[1] != out or zeros.shape != (groups, out):
        raise CorruptModelError(
            f"{what}: qweight {np.shape(qweight)} / qzeros {np.shape(qzeros)} do not match "
            f"scales {scales.shape}"
        )
    codes, zeros = codes[:, order], zeros[:, order].astype(np.float32)
    n_in = codes.shape[0]
    if n_in % groups:
        raise CorruptModelError(f"{what}: {n_in} input rows do not split into {groups} groups")
    group = np.arange(n_in) // (n_in // groups)
    w = (codes.astype(np.float32) - expand_groups(zeros, group, 0, what)) * expand_groups(
        scales, group, 0, what
    )
    return np.ascontiguousarray(w.T)


def bnb_int8_weight(weight: np.ndarray, scb: np.ndarray, *, what: str) -> np.ndarray:
    r"""The ``(out, in)`` weight of a bitsandbytes ``Linear8bitLt`` layer saved in int8:
    ``weight`` int8 ``(out, in)`` and ``SCB`` ``(out,)`` the absolute maximum of each row,
    :math:`W_{ij} = q_{ij}\,\mathrm{SCB}_i / 127` (row-wise absmax quantization, LLM.int8(),
    Dettmers et al. 2022; bitsandbytes ``int8_vectorwise_dequant``; docs/math.md §10)."""
    weight = np.asarray(weight)
    scb = check_scale(np.reshape(scb, -1), what)
    if weight.ndim != 2 or scb.size != weight.shape[0]:
        raise CorruptModelError(
            f"{what}: SCB has {scb.size} entries for an int8 weight of shape {weight.shape}"
        )
    return weight.astype(np.float32) * (scb[:, None] / np.float32(127.0))
