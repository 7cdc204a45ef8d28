r"""Packed (quantized) LLM checkpoints in safetensors / PyTorch files, by tensor names.

A quantized linear layer is stored as several tensors under one module prefix ``p``; their
codes are never analysed as a matrix. :func:`packed_layers` finds the groups and builds each
layer's effective weight (:mod:`rmtkit.adapters._quant`, docs/math.md §10), or flags it:

===========================  ===========================================  =====================
tensors under ``p``          scheme                                        result
===========================  ===========================================  =====================
``qweight`` ``(in/8, out)``  GPTQ (AutoGPTQ / GPTQModel), ``qzeros``,      dense ``(out, in)``
+ ``scales`` ``(g, out)``    ``g_idx`` optional                            ``"GPTQ int4 group G"``
``qweight`` ``(in, out/8)``  AWQ (AutoAWQ GEMM), ``qzeros``                dense, ``"AWQ int4 ..."``
``weight`` int8 + ``SCB``    bitsandbytes LLM.int8 (``Linear8bitLt``)      dense, ``"int8
                                                                           per-channel"``
``weight`` + ``weight_scale``  compressed-tensors / FP8 checkpoints:       dense,
(or ``weight_scale_inv``)    per tensor, per channel, per group along in,  ``"<dtype> ..."``
``weight_zero_point`` opt.   or 2-D blocks (``scale_inv``: multiplied)
``weight.absmax``,           bitsandbytes 4-bit (NF4 / FP4)                flagged:
``weight.quant_state...``                                                  ``unsupported-
                                                                           quantization``
``qweight`` otherwise        unknown packing                               flagged
===========================  ===========================================  =====================

The bit width and the GPTQ zero-point convention come from the model's ``quantization_config``
(``config.json``) or ``quantize_config.json`` next to the file (:func:`quant_config`): ``bits``
(default 4) and ``checkpoint_format`` (``"gptq"``, the default, stores zero points minus one;
``"gptq_v2"`` does not).
"""

import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rmtkit.adapters import _quant
from rmtkit.errors import CorruptModelError, RowWarning

__all__ = ["Packed", "packed_layers", "quant_config"]


class Packed:
    """One packed layer: its canonical shape, loader of the effective weight (or the reason it
    is flagged), the tensors it consumed and its ``quant`` label."""

    def __init__(
        self,
        prefix: str,
        anchor: str,
        consumed: set[str],
        shape: tuple[int, int],
        quant: str,
        load: Callable[[], np.ndarray] | None,
        skip: str = "",
        op: str = "Linear",
    ):
        self.prefix, self.anchor, self.consumed = prefix, anchor, consumed
        self.shape, self.quant, self.load, self.skip, self.op = shape, quant, load, skip, op


def quant_config(folder: Path | None) -> dict:
    """The quantization settings of a checkpoint folder: ``config.json``'s
    ``quantization_config`` or ``quantize_config.json`` ({} when neither exists or parses)."""
    if folder is None:
        return {}
    for name, key in (("config.json", "quantization_config"), ("quantize_config.json", None)):
        try:
            data = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            data = data.get(key) if key else data
            if isinstance(data, dict):
                return data
    return {}


def _int(config: dict, key: str, default: int) -> int:
    value = config.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def packed_layers(tensors: Iterable[Any], config: dict, where: str) -> dict[str, Packed]:
    """The packed layers among ``tensors`` (``NamedTensor`` with a ``raw`` loader), keyed by
    the name of the tensor whose place in the file order they take (module docstring)."""
    by_name = {t.name: t for t in tensors}
    bits = _int(config, "bits", _int(config, "w_bit", 4))
    method = str(config.get("quant_method", "")).lower()
    zero_offset = 0 if str(config.get("checkpoint_format", "gptq")) == "gptq_v2" else 1
    out: dict[str, Packed] = {}
    for name, t in by_name.items():
        if name.endswith(".qweight"):
            p = name[: -len(".qweight")]
            out[name] = _qweight(p, by_name, bits, method, zero_offset, where)
        elif re.search(r"\.weight\.quant_state\.bitsandbytes__(nf4|fp4)$", name):
            p = name.split(".weight.quant_state.")[0]
            if f"{p}.weight" in by_name:
                out[f"{p}.weight"] = _bnb4(p, by_name, name)
        elif name.endswith(".SCB") and f"{name[:-4]}.weight" in by_name:
            p = name[:-4]
            out[f"{p}.weight"] = _bnb_int8(p, by_name, where)
        elif name.endswith((".weight_scale", ".weight_scale_inv")):
            p = name.rsplit(".", 1)[0]
            if f"{p}.weight" in by_name:
                out[f"{p}.weight"] = _scaled(p, by_name, name, config, where)
    return out


def _raw(t) -> np.ndarray:
    return np.asarray(t.raw())


def _qweight(p: str, by_name: dict, bits: int, method: str, zero_offset: int, where: str):
    """GPTQ or AWQ, told apart by the shapes of ``qweight`` and ``scales``."""
    qw, scales = by_name[f"{p}.qweight"], by_name.get(f"{p}.scales")
    qzeros, g_idx = by_name.get(f"{p}.qzeros"), by_name.get(f"{p}.g_idx")
    consumed = {t.name for t in (qw, scales, qzeros, g_idx) if t is not None}
    per_word = 32 // bits if bits in (2, 4, 8) else 0
    what = f"{where}: packed layer {p!r}"
    if scales is None or len(qw.shape) != 2 or len(scales.shape) != 2 or not per_word:
        shape = (qw.shape[-1], math.prod(qw.shape[:-1])) if qw.shape else (1, 1)
        skip = RowWarning.UNSUPPORTED_QUANTIZATION.because("packed qweight (no scales / layout)")
        return Packed(p, qw.name, consumed, shape, "", None, skip)
    groups, out = scales.shape
    if qw.shape[1] == out and method != "awq":  # GPTQ: codes packed along in
        n_in = qw.shape[0] * per_word
        group = n_in // groups if groups and n_in % groups == 0 else 0

        def load():
            return _quant.gptq_weight(
                _raw(qw),
                None if qzeros is None else _raw(qzeros),
                _raw(scales),
                None if g_idx is None else _raw(g_idx),
                bits=bits,
                zero_offset=zero_offset,
                what=what,
            )

        label = f"GPTQ int{bits} group {group}" if g_idx is None else f"GPTQ int{bits} g_idx"
        return Packed(p, qw.name, consumed, (out, n_in), label, load, op="GPTQ")
    if qw.shape[1] * per_word == out and qzeros is not None:  # AWQ: codes packed along out
        n_in = qw.shape[0]

        def load():
            return _quant.awq_weight(_raw(qw), _raw(qzeros), _raw(scales), bits=bits, what=what)

        group = n_in // groups if groups and n_in % groups == 0 else 0
        return Packed(
            p, qw.name, consumed, (out, n_in), f"AWQ int{bits} group {group}", load, op="AWQ"
        )
    skip = RowWarning.UNSUPPORTED_QUANTIZATION.because(
        f"packed qweight {tuple(qw.shape)} with scales {tuple(scales.shape)}"
    )
    return Packed(p, qw.name, consumed, (out, qw.shape[0]), "", None, skip)


def _bnb4(p: str, by_name: dict, state_name: str) -> Packed:
    """bitsandbytes 4-bit (``Linear4bit``): flagged, its shape read from the quant state."""
    consumed = {n for n in by_name if n == f"{p}.weight" or n.startswith(f"{p}.weight.")}
    kind = state_name.rsplit("__", 1)[-1]
    shape: tuple[int, int] = (1, math.prod(by_name[f"{p}.weight"].shape) * 2)
    try:
        state = json.loads(bytes(np.asarray(by_name[state_name].raw(), np.uint8)).decode())
        dims = [int(d) for d in state["shape"]]
        if len(dims) == 2 and min(dims) > 0:
            shape = (dims[0], dims[1])
    except Exception:  # noqa: BLE001 -- the shape is informative only
        pass
    skip = RowWarning.UNSUPPORTED_QUANTIZATION.because(f"bitsandbytes {kind}")
    return Packed(p, f"{p}.weight", consumed, shape, "", None, skip, op="Linear4bit")


def _bnb_int8(p: str, by_name: dict, where: str) -> Packed:
    w, scb = by_name[f"{p}.weight"], by_name[f"{p}.SCB"]
    consumed = {w.name, scb.name} | ({f"{p}.weight_format"} & set(by_name))
    if len(w.shape) != 2:
        skip = RowWarning.UNSUPPORTED_QUANTIZATION.because("bitsandbytes int8 (layout)")
        return Packed(p, w.name, consumed, (1, math.prod(w.shape)), "", None, skip)

    def load():
        return _quant.bnb_int8_weight(_raw(w), _raw(scb), what=f"{where}: layer {p!r}")

    shape = (int(w.shape[0]), int(w.shape[1]))
    return Packed(p, w.name, consumed, shape, "int8 per-channel", load, op="Linear8bitLt")


def _scaled(p: str, by_name: dict, scale_name: str, config: dict, where: str) -> Packed:
    """``weight`` codes (int8, uint8, float8 ...) with a ``weight_scale`` (multiplied) or
    ``weight_scale_inv`` (FP8 checkpoints; also multiplied, despite the name) and an optional
    ``weight_zero_point``: per tensor, per output channel, per group of inputs, or per 2-D
    block."""
    w, s = by_name[f"{p}.weight"], by_name[scale_name]
    zp = by_name.get(f"{p}.weight_zero_point")
    consumed = {w.name, s.name} | ({zp.name} if zp is not None else set())
    what = f"{where}: layer {p!r} scale {scale_name!r}"
    if len(w.shape) != 2:
        skip = RowWarning.UNSUPPORTED_QUANTIZATION.because("scaled weight (rank)")
        return Packed(p, w.name, consumed, (1, math.prod(w.shape)), "", None, skip)
    n_out, n_in = (int(d) for d in w.shape)
    s_shape = tuple(int(d) for d in s.shape)
    size = math.prod(s_shape)
    if size == 1:
        scheme, label = "tensor", "per-tensor"
    elif size == n_out and (len(s_shape) == 1 or s_shape[-1] == 1):
        scheme, label = "channel", "per-channel"
    elif len(s_shape) == 2 and s_shape[0] == n_out and n_in % s_shape[1] == 0:
        scheme, label = "group", f"group {n_in // s_shape[1]}"
    elif len(s_shape) == 2 and s_shape[0] < n_out:
        block = config.get("weight_block_size") or [-(-n_out // s_shape[0]), -(-n_in // s_shape[1])]
        scheme, label = "block2d", f"block {int(block[0])}x{int(block[1])}"
    else:
        scheme, label = "bad", ""
    dtype = str(w.source_dtype or w.dtype)

    def expand(a: np.ndarray) -> np.ndarray:
        """A scale / zero point broadcast onto the ``(out, in)`` weight."""
        if scheme == "tensor" or a.size == 1:
            return a.reshape(())
        if scheme == "channel":
            return a.reshape(n_out, 1)
        a = a.reshape(s_shape)
        if scheme == "group":
            return np.repeat(a, n_in // s_shape[1], axis=1)
        b0, b1 = (int(b) for b in block)
        if -(-n_out // b0) != s_shape[0] or -(-n_in // b1) != s_shape[1]:
            raise CorruptModelError(
                f"{what}: {s_shape} blocks of {b0}x{b1} do not cover the weight {(n_out, n_in)}"
            )
        return np.repeat(np.repeat(a, b0, axis=0), b1, axis=1)[:n_out, :n_in]

    def load():
        scale = _quant.check_scale(_raw(s), what).astype(np.float32)
        z = None if zp is None else _raw(zp).astype(np.float32)
        if scheme == "bad" or (z is not None and z.size not in (1, scale.size)):
            raise CorruptModelError(
                f"{what}: {s_shape} does not fit the weight {(n_out, n_in)} (per tensor, per "
                "channel, per group of inputs or per 2-D block)"
            )
        q = _raw(w).astype(np.float32)
        if z is not None:
            q = q - expand(z)
        return q * expand(scale)

    return Packed(p, w.name, consumed, (n_out, n_in), f"{dtype} {label}".strip(), load)
