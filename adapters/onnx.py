"""ONNX adapter: ``.onnx`` files and in-memory ``onnx.ModelProto`` -> weight collection.

Graph-aware: a tensor is a layer when it is the weight input of

- ``MatMul``, input B (2-D): dense; B is ``(in, out)``: transposed;
- ``Gemm``, input B: dense; transposed unless ``transB=1`` (``transA`` does not matter),
  times ``alpha`` (the graph computes ``alpha * A @ B``);
- ``Conv``, input W: conv1d / conv2d, ``(out, in/groups, k...)`` as stored;
- ``ConvTranspose``, input W: conv1d / conv2d, stored ``(in, out/groups, k...)``: axes 0, 1
  swapped;
- ``Gather`` (``axis=0``, non-constant indices), input data (2-D): embedding ``(vocab, dim)``.

where the weight input is an initializer or a ``Constant`` node output, possibly reached through
``Transpose``, ``Cast``, ``Reshape``, ``Identity``, ``QuantizeLinear`` and ``DequantizeLinear``
nodes (quantized weights are dequantized, per-tensor, per-axis or blocked; a float weight
quantized in the graph, as QDQ models do, is read as the dequantized value the graph computes).

Quantized operators (docs/math.md §10) are read as the float weight the runtime computes with:
``QLinearConv``, ``QLinearMatMul``, ``com.microsoft.QGemm``, ``DynamicQuantizeMatMul``,
``MatMulIntegerToFloat`` (weight, scale and zero-point inputs), ``MatMulInteger`` /
``ConvInteger`` (the weight scale taken from the ``Mul`` that rescales their output, as
``quantize_dynamic`` builds it), ``com.microsoft.MatMulNBits`` (N-bit blocks, zero points,
``g_idx``), ``com.microsoft.GatherBlockQuantized`` and a ``Gather`` of integer codes dequantized
after the gather (embeddings). Integer codes that reach an analyzable op without such a
dequantization, or feed another quantized operator, are rows flagged
``unsupported-quantization: <op>`` (node attribute ``rmtkit_warning``; reading them raises),
never weights. A scale or zero point that does not fit its tensor, or a zero scale, raises
CorruptModelError naming the weight when that layer is read (the other layers still load).
Every node records ``quant`` (``""``, ``"int8 per-channel"``, ``"int4 block 32"`` ...).

Initializers feeding no such op (biases, norms, shapes) are not layers; a tensor used by several
ops (tied weights) is one layer, at its first use. ``layer_id`` follows the node order, which
ONNX requires to be topological.

Node paths come from the tensor name when it is a module path (``encoder.fc1.weight`` ->
``encoder/fc1``; the suffixes onnxruntime's quantizers add, ``_quantized``, ``_Transposed``,
``_Q4`` ..., are dropped, so a quantized model's layers have its float model's paths), else from
the node name (``/encoder/fc1/MatMul`` -> ``encoder/fc1``).

Tensors stay where they are until read: external data is memory-mapped at read time (files are
checked for existence and size when loading), in-memory tensors are converted per read.

Write-back: :func:`save` puts (modified) weights of a collection back into a copy of the model,
inverting the chain (quantized weights are re-quantized with their own scale and zero point).
"""

import copy
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from rmtkit.adapters import _quant
from rmtkit.adapters._common import finish, is_file, require
from rmtkit.adapters._quant import (
    check_scale,
    gather_block_quantized_weight,
    matmul_nbits_weight,
)
from rmtkit.collection import LazyArray, iter_layers, sanitize_path, weight_node
from rmtkit.collection.finetune import SKIP_ATTR
from rmtkit.errors import (
    CorruptModelError,
    InvalidWeightsError,
    MissingDataError,
    RmtkitError,
    RowWarning,
    UnsupportedModelError,
)

onnx = require("onnx", extra="onnx", who="rmtkit.adapters.onnx")
from onnx import numpy_helper  # noqa: E402

__all__ = ["from_object", "from_onnx", "load", "save", "write_back"]


# ---------------------------------------------------------------------------- tensors
def _np_dtype(data_type: int, what: str = "") -> np.dtype:
    """numpy dtype of an ONNX data type; CorruptModelError (naming ``what``) if unknown."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptModelError(f"{what}: unknown ONNX data type {data_type!r}") from err


def _dtype_str(data_type: int) -> str:
    try:
        return _np_dtype(data_type).name
    except Exception:  # a type numpy cannot name
        return onnx.TensorProto.DataType.Name(data_type).lower()


def _bits(dtype: np.dtype) -> int:
    """Bits per element (4 for int4 / float4, which ONNX packs two to a byte)."""
    import ml_dtypes

    for info in (ml_dtypes.finfo, ml_dtypes.iinfo):
        try:
            return int(info(dtype).bits)
        except (TypeError, ValueError):
            pass
    return 8 * dtype.itemsize


def _nbytes(count: int, dtype: np.dtype) -> int | None:
    """Bytes of ``count`` packed elements; None for types not stored whole bytes per element."""
    bits = _bits(dtype)
    if dtype.kind in "OUS" or bits % 8:
        return None
    return count * (bits // 8)


@dataclass
class _Const:
    """A constant tensor of the graph: initializer or Constant node value."""

    name: str
    proto: Any  # onnx.TensorProto
    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], np.ndarray]
    node: Any = None  # the Constant node, when not an initializer


def _external_int(info: dict, key: str, default: int, what: str) -> int:
    """An integer field of a tensor's external data entry (offset, length), checked."""
    raw = info.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise CorruptModelError(f"{what}: external data {key} must be an integer >= 0, got {raw!r}")
    return value


def _external(proto, name: str, where: str, base_dir: Path | None, shape, dtype, count):
    """Loader of a tensor stored in an external file, its location and size checked now."""
    what = f"{where}: tensor {name!r}"
    info = {e.key: e.value for e in proto.external_data}
    location = info.get("location")
    if not location:
        raise CorruptModelError(f"{what} has external data but no location")
    if Path(location).is_absolute() or ".." in Path(location).parts:
        raise CorruptModelError(
            f"{what}: external data location {location!r:.200} must be a relative path inside "
            "the model's folder"
        )
    if base_dir is None:
        raise MissingDataError(
            f"{what} refers to external data {location!r}; pass the model's folder as "
            "base_dir= (or load the .onnx file by path)"
        )
    file = base_dir / location
    need = _nbytes(count, dtype)
    offset = _external_int(info, "offset", 0, what)
    length = _external_int(info, "length", need if need is not None else 0, what)
    if not is_file(file):
        raise MissingDataError(
            f"{where}: external data file {str(file)!r:.300} of tensor {name!r} does not exist"
        )
    if need is None or length != need or file.stat().st_size < offset + length:
        raise CorruptModelError(
            f"{where}: external data of tensor {name!r} in {str(file)!r} is too short or "
            f"inconsistent (offset {offset}, length {length}, shape {shape}, {dtype}; needs "
            f"{need} bytes)"
        )

    def load(file=file, offset=offset):
        mm = np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
        out = np.array(mm)  # one copy; the map closes with mm
        del mm
        return out

    return load


def _check_stored(proto, name: str, where: str, shape, dtype, count) -> None:
    """Raise unless an in-file tensor stores exactly ``count`` elements (raw or typed field)."""
    if proto.HasField("raw_data"):
        need = _nbytes(count, dtype)
        if need is not None and len(proto.raw_data) != need:
            raise CorruptModelError(
                f"{where}: tensor {name!r} holds {len(proto.raw_data)} bytes, expected "
                f"{need} for shape {shape} of {dtype}"
            )
        return
    if _nbytes(count, dtype) is None:
        return  # packed sub-byte types: checked when read
    field_name = onnx.helper.tensor_dtype_to_field(proto.data_type)
    stored = len(getattr(proto, field_name))
    need = 2 * count if dtype.kind == "c" else count
    if stored != need:
        raise CorruptModelError(
            f"{where}: tensor {name!r} stores {stored} values in {field_name}, expected {need} "
            f"for shape {shape} of {dtype}"
        )


def _const(proto, name: str, where: str, base_dir: Path | None, node=None) -> _Const:
    shape = tuple(int(d) for d in proto.dims)
    if any(d < 0 for d in shape):
        raise CorruptModelError(f"{where}: tensor {name!r} has a negative dimension {shape}")
    dtype = _np_dtype(proto.data_type, f"{where}: tensor {name!r}")
    count = math.prod(shape)
    if proto.data_location == onnx.TensorProto.EXTERNAL:
        load = _external(proto, name, where, base_dir, shape, dtype, count)
        return _Const(name, proto, shape, dtype, load, node)
    _check_stored(proto, name, where, shape, dtype, count)
    return _Const(name, proto, shape, dtype, lambda p=proto: numpy_helper.to_array(p), node)


# ---------------------------------------------------------------------------- plan
@dataclass
class _Step:
    op: str  # "transpose" | "reshape" | "cast" | "quantize" | "dequantize" | "scale" | "custom"
    in_shape: tuple[int, ...]
    in_dtype: np.dtype
    perm: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None
    to: np.dtype | None = None
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 1
    block: int = 0
    what: str = ""  # names the tensor and the node in errors raised when the layer is read
    error: str = ""  # inconsistent parameters: raised (CorruptModelError) when read
    fn: Callable[[np.ndarray], np.ndarray] | None = None  # "custom": stored codes -> W


@dataclass
class _Entry:
    """How one layer's canonical W is obtained from a stored constant."""

    const: _Const
    steps: list[_Step]
    op: str
    node_name: str
    kind: str
    perm: tuple[int, ...] | None
    groups: int | None
    shape: tuple[int, ...] = field(default=())  # shape after the steps, before `perm`
    quant: str = ""  # the node's ``quant`` attribute ("" for float weights)
    skip: str = ""  # an unsupported-quantization row warning: the layer is never read


def _broadcast(param: np.ndarray, x_shape, axis: int, block: int) -> np.ndarray:
    param = np.asarray(param)
    if param.size == 1:
        return param.reshape(())
    if block:
        rep = np.repeat(param, min(block, x_shape[axis]), axis=axis)
        return np.take(rep, np.arange(x_shape[axis]), axis=axis)
    shape = [1] * len(x_shape)
    shape[axis] = -1
    return param.reshape(shape)


def _apply(a: np.ndarray, step: _Step) -> np.ndarray:
    if step.error:
        raise CorruptModelError(step.error)
    if step.op == "custom":
        return step.fn(a)
    if step.op == "scale":  # Gemm's alpha: the graph computes with alpha * B
        return (a * step.scale).astype(a.dtype)
    if step.op == "transpose":
        return np.transpose(a, step.perm)
    if step.op == "reshape":
        return np.reshape(a, step.shape)
    if step.op == "cast":
        return a.astype(step.to)
    if step.op == "quantize":
        return _quantize(a, step, step.to)
    return _dequantize(a, step, step.to)


def _dequantize(a: np.ndarray, step: _Step, to) -> np.ndarray:
    """(x - zero_point) * scale, in float32 (then ``to``)."""
    axis = step.axis % a.ndim if a.ndim else 0
    scale = _broadcast(check_scale(step.scale, step.what), a.shape, axis, step.block)
    x = a.astype(np.float32)
    if step.zero_point is not None:
        x = x - _broadcast(step.zero_point, a.shape, axis, step.block).astype(np.float32)
    return (x * scale.astype(np.float32)).astype(to)


def _invert(a: np.ndarray, step: _Step) -> np.ndarray:
    if step.op == "custom":
        raise UnsupportedModelError(
            f"{step.what}: writing weights back into this quantized operator is not supported"
        )
    if step.op == "scale":
        if step.scale == 0:
            raise UnsupportedModelError(
                f"{step.what}: Gemm with alpha = 0 ignores its weight; nothing can be written back"
            )
        return (a / step.scale).astype(a.dtype)
    if step.op == "transpose":
        return np.transpose(a, np.argsort(step.perm))
    if step.op == "reshape":
        return np.reshape(a, step.in_shape)
    if step.op == "cast":
        return a.astype(step.in_dtype)
    if step.op == "quantize":  # back to the float weight the graph quantizes
        return _dequantize(a, step, step.in_dtype)
    return _quantize(a, step, step.in_dtype)


def _quantize(a: np.ndarray, step: _Step, to) -> np.ndarray:
    """round(x / scale) + zero_point, saturated to the integer type ``to`` (ONNX rounding)."""
    axis = step.axis % a.ndim if a.ndim else 0
    scale = _broadcast(check_scale(step.scale, step.what), a.shape, axis, step.block)
    scale = scale.astype(np.float32)
    q = np.rint(a.astype(np.float32) / scale)  # half to even, as ONNX
    if step.zero_point is not None:
        q = q + _broadcast(step.zero_point, a.shape, axis, step.block).astype(np.float32)
    info = np.iinfo(to) if np.issubdtype(to, np.integer) else None
    if info is not None:
        q = np.clip(q, info.min, info.max)
    return q.astype(to)


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _int_attr(node, name: str, default: int, where: str) -> int:
    """An integer attribute of ``node``; CorruptModelError when it is of another type."""
    value = _attr(node, name, default)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise CorruptModelError(
        f"{where}: node {node.name!r} ({node.op_type}) attribute {name!r} must be an integer, "
        f"got {value!r:.80}"
    )


def _reshape_target(in_shape, target) -> tuple[int, ...] | None:
    """The shape ONNX ``Reshape`` gives ``in_shape`` (0 copies a dim, one -1 is inferred);
    None when the target is not a valid reshape of that many elements."""
    target = np.asarray(target)
    if target.ndim != 1 or not np.issubdtype(target.dtype, np.integer):
        return None
    target = [int(t) for t in target]
    if any(t < -1 for t in target) or target.count(-1) > 1:
        return None
    if any(t == 0 and i >= len(in_shape) for i, t in enumerate(target)):
        return None
    out = [in_shape[i] if t == 0 else t for i, t in enumerate(target)]
    total = math.prod(in_shape)
    if -1 in out:
        known = math.prod(t for t in out if t != -1)
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    return tuple(out) if math.prod(out) == total else None


def _quant_params_fit(
    shape, scale: np.ndarray, zp: np.ndarray | None, axis: int, block: int
) -> bool:
    """Whether scale / zero point broadcast onto a tensor of ``shape`` as ONNX defines it:
    per tensor (one value), per axis (1-D, ``shape[axis]`` values) or blocked (``shape`` with
    ``ceil(shape[axis] / block)`` along ``axis``)."""
    if zp is not None and zp.shape != scale.shape and not (zp.size == 1 == scale.size):
        return False
    if not np.issubdtype(scale.dtype, np.floating) and scale.dtype.kind != "V":
        return False
    if scale.size == 1:
        return True
    if not shape or not -len(shape) <= axis < len(shape) or block < 0:
        return False
    axis %= len(shape)
    if not block:
        return scale.ndim == 1 and scale.shape[0] == shape[axis]
    want = list(shape)
    want[axis] = -(-shape[axis] // block)
    return scale.shape == tuple(want)


_CHAIN_OPS = ("Transpose", "Cast", "Reshape", "Identity", "DequantizeLinear", "QuantizeLinear")


class _Graph:
    def __init__(self, model, where: str, base_dir: Path | None):
        g = model.graph
        self.where = where
        self.consts: dict[str, _Const] = {}
        for init in g.initializer:
            self.consts[init.name] = _const(init, init.name, where, base_dir)
        self.producer = {}
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            if node.op_type == "Constant" and node.output:
                value = _attr(node, "value")
                if isinstance(value, onnx.TensorProto):
                    self.consts[node.output[0]] = _const(
                        value, node.output[0], where, base_dir, node=node
                    )
        self.nodes = list(g.node)
        self.consumers: dict[str, list] = {}
        for node in g.node:
            for name in dict.fromkeys(node.input):
                if name:
                    self.consumers.setdefault(name, []).append(node)

    def small(self, name: str) -> np.ndarray | None:
        """A small constant (shape, scale, zero point) read now; None when not a numeric one."""
        c = self.consts.get(name)
        if c is None or c.dtype.kind in "OUSc" or math.prod(c.shape) > 1 << 20:
            return None
        try:
            return np.asarray(c.load())
        except Exception as err:  # a malformed proto onnx cannot decode
            raise CorruptModelError(
                f"{self.where}: constant {name!r} cannot be decoded ({err})"
            ) from err

    def _bad(self, node, what: str) -> CorruptModelError:
        return CorruptModelError(
            f"{self.where}: node {node.name!r} ({node.op_type}) on a weight path: {what}"
        )

    def _params(self, node, s_idx: int | None, z_idx: int | None):
        """``(scale, zero_point, ok)`` of a quantized op's weight: constants read now; ``ok`` is
        False when one of them is computed at run time (the scheme cannot be read)."""
        scale = zp = None
        if s_idx is not None:
            if len(node.input) <= s_idx or not node.input[s_idx]:
                return None, None, False
            scale = self.small(node.input[s_idx])
            if scale is None:
                return None, None, False
        if z_idx is not None and len(node.input) > z_idx and node.input[z_idx]:
            zp = self.small(node.input[z_idx])
            if zp is None:
                return None, None, False
        return scale, zp, True

    def _dq_step(self, node, shape, dtype, scale, zp, axis: int, block: int, weight: str):
        """The dequantize step ``(q - zp) * scale`` of ``node`` on the ``shape`` codes of the
        constant ``weight``; inconsistent parameters become the step's ``error``, raised as a
        CorruptModelError naming the tensors when the layer is read (docs/math.md §10)."""
        what = f"{self.where}: weight {weight!r} ({node.op_type} {node.name!r})"
        error = ""
        if not _quant_params_fit(shape, scale, zp, axis, block):
            error = (
                f"{what}: scale {scale.shape} / zero point "
                f"{None if zp is None else zp.shape} (axis={axis}, block_size={block}) do not fit "
                f"the tensor {shape}"
            )
        to = np.dtype(np.float32) if scale.dtype.itemsize < 4 else scale.dtype
        return _Step(
            "dequantize",
            shape,
            dtype,
            to=to,
            scale=scale,
            zero_point=zp,
            axis=axis,
            block=block,
            what=what,
            error=error,
        )

    def _quant_step(self, node, op: str, shape, dtype, weight: str) -> _Step | None:
        """The (de)quantize step of ``node`` on a ``shape`` tensor; None if not constant."""
        scale, zp, ok = self._params(node, 1, 2)
        if not ok:
            return None
        axis = _int_attr(node, "axis", 1, self.where)
        block = _int_attr(node, "block_size", 0, self.where)
        step = self._dq_step(node, shape, dtype, scale, zp, axis, block, weight)
        if op == "quantize":
            step.op = "quantize"
            step.to = zp.dtype if zp is not None else np.dtype(np.uint8)
        return step

    def _step(self, node, shape, dtype, weight: str) -> _Step | None:
        """The step of one chain node on a ``shape`` / ``dtype`` tensor, checked; None when
        the chain is not constant (a Reshape target or a scale computed at run time)."""
        op = node.op_type
        if op == "Transpose":
            perm = _attr(node, "perm")
            perm = tuple(reversed(range(len(shape)))) if perm is None else perm
            if not isinstance(perm, (list, tuple)) or sorted(perm) != list(range(len(shape))):
                raise self._bad(
                    node,
                    f"perm {perm!r:.80} is not a permutation of the axes of "
                    f"a {len(shape)}-D tensor",
                )
            return _Step("transpose", shape, dtype, perm=tuple(int(p) for p in perm))
        if op == "Cast":
            to = _np_dtype(
                _int_attr(node, "to", 0, self.where), f"{self.where}: node {node.name!r} (Cast)"
            )
            return _Step("cast", shape, dtype, to=to)
        if op == "Reshape":
            target = self.small(node.input[1]) if len(node.input) > 1 else None
            if target is None:
                return None
            new = _reshape_target(shape, target)
            if new is None:
                raise self._bad(node, f"cannot reshape {shape} to {target.tolist()!r:.80}")
            return _Step("reshape", shape, dtype, shape=new)
        if op == "QuantizeLinear":  # a float weight quantized in the graph (QDQ models)
            return self._quant_step(node, "quantize", shape, dtype, weight)
        return self._quant_step(node, "dequantize", shape, dtype, weight)

    def resolve(self, name: str) -> tuple[_Const, list[_Step], tuple[int, ...]] | None:
        """Follow ``name`` back to a constant through the allowed ops; None if it isn't one."""
        chain = []
        cur = name
        for _ in range(64):
            if cur in self.consts:
                break
            node = self.producer.get(cur)
            if node is None or not node.input:
                return None
            if node.op_type not in _CHAIN_OPS:
                return None
            chain.append(node)
            cur = node.input[0]
        else:
            return None
        const = self.consts[cur]
        shape, dtype = const.shape, const.dtype
        steps: list[_Step] = []
        for node in reversed(chain):
            if node.op_type == "Identity":
                continue
            step = self._step(node, shape, dtype, const.name)
            if step is None:
                return None
            steps.append(step)
            if step.op == "transpose":
                shape = tuple(shape[p] for p in step.perm)
            elif step.op == "reshape":
                shape = step.shape
            dtype = step.to if step.to is not None else dtype
        return const, steps, shape

    # ------------------------------------------------------------------ one entry per op
    def _unsupported(self, node, const: _Const, reason: str, kind: str = "") -> _Entry:
        """A layer flagged ``unsupported-quantization: <reason>``: a row without metrics; its
        codes are never read as weights. The shape is the op's ``(N, K)`` when it states one,
        else the stored tensor's (viewed as 2-D when it is not 2-D to 4-D)."""
        shape = tuple(const.shape)
        n_out, k_in = _attr(node, "N"), _attr(node, "K")
        if isinstance(n_out, int) and isinstance(k_in, int) and n_out > 0 and k_in > 0:
            shape = (n_out, k_in)
        elif len(shape) == 1 or len(shape) > 4:
            shape = (shape[0], math.prod(shape[1:])) if len(shape) > 1 else (1, shape[0])
        if not kind:
            kind = {2: "dense", 3: "conv1d", 4: "conv2d"}[len(shape)]
            if "Gather" in node.op_type or "Embed" in node.op_type:
                kind = "embedding" if len(shape) == 2 else kind
        skip = RowWarning.UNSUPPORTED_QUANTIZATION.because(reason)
        return _Entry(
            const, [], node.op_type, node.name, kind, None, None, shape, quant="", skip=skip
        )

    def _float_entry(self, node) -> _Entry | None:
        """MatMul / Gemm / Conv / ConvTranspose / Gather: the weight reached through the chain
        ops (dequantized when the chain dequantizes it); integer codes reaching the op
        directly are flagged, never read."""
        op = node.op_type
        idx = _FLOAT_OPS[op]
        if len(node.input) <= idx:
            return None
        found = self.resolve(node.input[idx])
        if found is None:
            return None
        const, steps, shape = found
        final = _final_dtype(const, steps)
        if 0 in shape or _value_kind(final) == "other":
            return None
        perm: tuple[int, ...] | None = None
        groups = None
        if op == "MatMul":
            if len(shape) != 2:
                return None
            kind, perm = "dense", (1, 0)
        elif op == "Gemm":
            if len(shape) != 2:
                return None
            kind = "dense"
            perm = None if _int_attr(node, "transB", 0, self.where) else (1, 0)
            steps = steps + self._gemm_alpha(node, shape, final)
        elif op in ("Conv", "ConvTranspose"):
            if len(shape) not in (3, 4):
                return None
            kind = "conv1d" if len(shape) == 3 else "conv2d"
            groups = _int_attr(node, "group", 1, self.where)
            if groups < 1:
                raise self._bad(node, f"group must be >= 1, got {groups}")
            if op == "ConvTranspose":
                perm = (1, 0) + tuple(range(2, len(shape)))
        else:  # Gather
            if len(shape) != 2 or _int_attr(node, "axis", 0, self.where) != 0:
                return None
            if len(node.input) > 1 and self.resolve(node.input[1]) is not None:
                return None  # constant indices: a shape computation, not an embedding
            kind = "embedding"
        if _value_kind(final) == "int":
            if op == "Gather" and not steps:
                return self._gathered_then_dequantized(node, const, shape)
            return self._unsupported(node, const, f"{op} on {final.name} codes", kind)
        quant = _steps_label(steps)
        return _Entry(const, steps, op, node.name, kind, perm, groups, shape, quant=quant)

    def _gemm_alpha(self, node, shape, dtype) -> list[_Step]:
        """``Gemm`` computes ``alpha * A @ B``: its effective weight is ``alpha * B`` (no step
        when ``alpha`` is 1, the default)."""
        alpha = _attr(node, "alpha", 1.0)
        if not isinstance(alpha, (float, int, np.floating)) or isinstance(alpha, bool):
            raise self._bad(node, f"attribute 'alpha' must be a float, got {alpha!r:.80}")
        if alpha == 1.0:
            return []
        what = f"{self.where}: node {node.name!r} (Gemm, alpha={alpha:g})"
        return [_Step("scale", tuple(shape), dtype, scale=np.float32(alpha), what=what)]

    def _gathered_then_dequantized(self, node, const: _Const, shape) -> _Entry:
        """An integer table gathered, its rows dequantized after the gather (what
        ``quantize_dynamic`` does with embeddings): ``DequantizeLinear`` on the Gather output,
        per tensor or per column of the table."""
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "DequantizeLinear":
            return self._unsupported(node, const, f"Gather on {const.dtype.name} codes")
        dq = users[0]
        scale, zp, ok = self._params(dq, 1, 2)
        if not ok or _int_attr(dq, "block_size", 0, self.where):
            return self._unsupported(node, const, "Gather + DequantizeLinear (scheme)")
        axis = 1 if scale.size > 1 else 0
        zp = None if zp is None else zp.reshape(-1)
        step = self._dq_step(dq, shape, const.dtype, scale.reshape(-1), zp, axis, 0, const.name)
        quant = _quant_label(const.dtype, step)
        return _Entry(const, [step], "Gather", node.name, "embedding", None, None, shape, quant)

    def _output_scale(self, node) -> np.ndarray | None:
        """The weight scale of a ``MatMulInteger`` / ``ConvInteger`` node of a dynamically
        quantized model: its output is cast to float and multiplied by ``a_scale * w_scale``,
        ``a_scale`` the run-time scale (output 1) of the ``DynamicQuantizeLinear`` of its input
        A and ``w_scale`` a constant: that constant. None when the graph is not of this form."""
        out = node.output[0] if node.output else ""
        mul = None
        for _ in range(4):
            users = self.consumers.get(out, [])
            if len(users) != 1:
                return None
            if users[0].op_type == "Cast":
                out = users[0].output[0]
                continue
            mul = users[0] if users[0].op_type == "Mul" else None
            break
        if mul is None or len(mul.input) != 2:
            return None
        other = mul.input[1] if mul.input[0] == out else mul.input[0]
        prod = self.producer.get(other)
        if prod is None or prod.op_type != "Mul" or len(prod.input) != 2:
            return None
        a_quant = self.producer.get(node.input[0])
        if a_quant is None or a_quant.op_type != "DynamicQuantizeLinear":
            return None
        a_scale = a_quant.output[1] if len(a_quant.output) > 1 else None
        first, second = prod.input
        if first == a_scale:
            return self.small(second)
        if second == a_scale:
            return self.small(first)
        return None

    def _integer_entry(self, node) -> _Entry | None:
        """QOperator and integer ops (:data:`_INT_OPS`): the integer weight with its scale and
        zero point, :math:`W = (q - z) s` per tensor or per output channel."""
        op = node.op_type
        w_idx, s_idx, z_idx = _INT_OPS[op]
        if len(node.input) <= w_idx:
            return None
        found = self.resolve(node.input[w_idx])
        if found is None:
            return None
        const, steps, shape = found
        if any(s.op not in ("transpose", "reshape") for s in steps) or 0 in shape:
            return None if not steps else self._unsupported(node, const, f"{op} (weight chain)")
        if _value_kind(const.dtype) != "int":
            return None
        scale, zp, ok = self._params(node, s_idx, z_idx)
        if ok and s_idx is None:
            scale = self._output_scale(node)
        if not ok or scale is None:
            return self._unsupported(node, const, f"{op} (weight scale not constant)")
        perm: tuple[int, ...] | None = None
        groups = None
        if op in ("QLinearConv", "ConvInteger"):
            if len(shape) not in (3, 4):
                return None
            kind, axis = ("conv1d" if len(shape) == 3 else "conv2d"), 0
            groups = _int_attr(node, "group", 1, self.where)
            if groups < 1:
                raise self._bad(node, f"group must be >= 1, got {groups}")
        elif len(shape) != 2:
            return None
        elif op == "QGemm" and _int_attr(node, "transB", 0, self.where):
            kind, axis = "dense", 0
        else:
            kind, axis, perm = "dense", 1, (1, 0)
        scale = _channel_vector(scale, shape[axis])
        zp = None if zp is None else _channel_vector(zp, shape[axis])
        step = self._dq_step(node, shape, const.dtype, scale, zp, axis, 0, const.name)
        quant = _quant_label(const.dtype, step)
        return _Entry(const, [*steps, step], op, node.name, kind, perm, groups, shape, quant=quant)

    def _optional_const(self, node, idx: int) -> tuple[_Const | None, bool]:
        """``(constant, ok)`` of an optional input: ``(None, True)`` when absent, ``ok`` False
        when it is computed at run time."""
        if len(node.input) <= idx or not node.input[idx]:
            return None, True
        c = self.consts.get(node.input[idx])
        return c, c is not None

    def _nbits_entry(self, node) -> _Entry | None:
        """``com.microsoft.MatMulNBits``: the ``(N, K)`` weight of its blockwise N-bit codes
        (:func:`rmtkit.adapters._quant.matmul_nbits_weight`), dequantized when read."""
        b = self.consts.get(node.input[1]) if len(node.input) > 1 else None
        if b is None:
            return None
        n_out = _int_attr(node, "N", 0, self.where)
        k_in = _int_attr(node, "K", 0, self.where)
        bits = _int_attr(node, "bits", 4, self.where)
        block = _int_attr(node, "block_size", 0, self.where)
        scales, ok_s = self._optional_const(node, 2)
        zps, ok_z = self._optional_const(node, 3)
        g_idx, ok_g = self._optional_const(node, 4)
        if _int_attr(node, "weight_prepacked", 0, self.where):
            return self._unsupported(node, b, "MatMulNBits (prepacked layout)")
        if scales is None or not (ok_s and ok_z and ok_g) or n_out < 1 or k_in < 1:
            return self._unsupported(node, b, "MatMulNBits (parameters not constant)")
        if g_idx is not None and zps is not None and zps.dtype == np.uint8:
            # onnxruntime's CPU kernel ignores packed zero points when g_idx is given (measured
            # with 1.32: it uses 2**(bits-1)); the spec says otherwise: no number is safe
            return self._unsupported(node, b, "MatMulNBits (g_idx with packed zero points)")
        what = f"{self.where}: MatMulNBits {node.name!r} weight {b.name!r}"

        def dequantize(codes, s=scales, z=zps, g=g_idx):
            return matmul_nbits_weight(
                codes,
                s.load(),
                None if z is None else z.load(),
                None if g is None else g.load(),
                k=k_in,
                n=n_out,
                bits=bits,
                block_size=block,
                what=what,
            )

        step = _Step("custom", b.shape, b.dtype, to=np.dtype(np.float32), fn=dequantize, what=what)
        quant = _quant.label(f"int{bits}", "block", block)
        shape = (n_out, k_in)
        return _Entry(b, [step], "MatMulNBits", node.name, "dense", None, None, shape, quant)

    def _gather_block_entry(self, node) -> _Entry | None:
        """``com.microsoft.GatherBlockQuantized``: the embedding table of its blockwise codes
        (:func:`rmtkit.adapters._quant.gather_block_quantized_weight`)."""
        data = self.consts.get(node.input[0]) if node.input else None
        if data is None:
            return None
        bits = _int_attr(node, "bits", 4, self.where)
        block = _int_attr(node, "block_size", 128, self.where)
        q_axis = _int_attr(node, "quantize_axis", 1, self.where)
        scales, ok_s = self._optional_const(node, 2)
        zps, ok_z = self._optional_const(node, 3)
        if (
            len(data.shape) != 2
            or _int_attr(node, "gather_axis", 0, self.where) != 0
            or q_axis not in (1, -1, 0, -2)
        ):
            return self._unsupported(node, data, "GatherBlockQuantized (axes)", "embedding")
        if scales is None or not (ok_s and ok_z):
            return self._unsupported(node, data, "GatherBlockQuantized (parameters)", "embedding")
        shape = data.shape
        if data.dtype == np.uint8:
            if bits not in (2, 4, 8):
                return self._unsupported(node, data, f"GatherBlockQuantized ({bits} bits)")
            shape = (shape[0], shape[1] * (8 // bits))
            dtype_name = f"uint{bits}"
        else:
            dtype_name = data.dtype.name
        what = f"{self.where}: GatherBlockQuantized {node.name!r} table {data.name!r}"

        def dequantize(codes, s=scales, z=zps):
            return gather_block_quantized_weight(
                codes,
                s.load(),
                None if z is None else z.load(),
                bits=bits,
                block_size=block,
                quantize_axis=q_axis,
                what=what,
            )

        step = _Step(
            "custom", data.shape, data.dtype, to=np.dtype(np.float32), fn=dequantize, what=what
        )
        quant = _quant.label(dtype_name, "block", block)
        return _Entry(data, [step], node.op_type, node.name, "embedding", None, None, shape, quant)

    def _leftover(self, node, pos: int, const: _Const) -> str | None:
        """Why an integer constant that no entry reads, input ``pos`` of ``node``, is a
        quantized weight rmtkit cannot read (None when it is not a weight: shapes, indices,
        quantized biases)."""
        op = node.op_type
        if op in _FLOAT_OPS or op in _INT_OPS or op in ("MatMulNBits", "GatherBlockQuantized"):
            weight_idx = (
                _FLOAT_OPS.get(op)
                if op in _FLOAT_OPS
                else _INT_OPS[op][0]
                if op in _INT_OPS
                else (1 if op == "MatMulNBits" else 0)
            )
            return f"{op} (scheme)" if pos == weight_idx and len(const.shape) >= 2 else None
        if op == "DequantizeLinear":
            if pos != 0 or len(const.shape) < 2:
                return None
            return "DequantizeLinear (scheme)" if self._feeds_weight(node.output[0]) else None
        if _QUANT_OP_WORDS.search(op):
            matrix = sum(d > 1 for d in const.shape) >= 2
            return op if matrix or (op in _PACKED_1D_OPS and pos == 1) else None
        return None

    def _feeds_weight(self, name: str) -> bool:
        """Whether ``name`` reaches the weight input of an analyzable op through chain ops."""
        todo, seen = [name], set()
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            for user in self.consumers.get(cur, []):
                op = user.op_type
                if op in _CHAIN_OPS and user.input and user.input[0] == cur:
                    todo.extend(user.output)
                elif op in _FLOAT_OPS:
                    idx = _FLOAT_OPS[op]
                    if len(user.input) > idx and user.input[idx] == cur:
                        return True
        return False

    def plan(self) -> list[_Entry]:
        found: list[tuple[int, _Entry]] = []
        used: set[str] = set()
        for i, node in enumerate(self.nodes):
            op = node.op_type
            if op in _FLOAT_OPS:
                entry = self._float_entry(node)
            elif op in _INT_OPS:
                entry = self._integer_entry(node)
            elif op == "MatMulNBits":
                entry = self._nbits_entry(node)
            elif op == "GatherBlockQuantized":
                entry = self._gather_block_entry(node)
            else:
                continue
            if entry is None or entry.const.name in used:
                continue
            used.add(entry.const.name)
            found.append((i, entry))
        for i, node in enumerate(self.nodes):  # quantized weights no entry could read
            for pos, name in enumerate(node.input):
                const = self.consts.get(name)
                if const is None or name in used or _value_kind(const.dtype) != "int":
                    continue
                reason = self._leftover(node, pos, const)
                if reason is not None:
                    used.add(name)
                    found.append((i, self._unsupported(node, const, reason)))
        found.sort(key=lambda item: item[0])
        return [entry for _, entry in found]


#: weight input of the float operators that hold layers
_FLOAT_OPS = {"MatMul": 1, "Gemm": 1, "Conv": 1, "ConvTranspose": 1, "Gather": 0}
#: QOperator / integer operators: (weight input, scale input or None when the weight scale is
#: applied to the output, zero-point input), from the ONNX and onnxruntime contrib-op specs
_INT_OPS = {
    "QLinearConv": (3, 4, 5),
    "QLinearMatMul": (3, 4, 5),
    "QGemm": (3, 4, 5),
    "MatMulInteger": (1, None, 3),
    "ConvInteger": (1, None, 3),
    "DynamicQuantizeMatMul": (1, 2, 3),
    "MatMulIntegerToFloat": (1, 3, 5),
}
#: quantized matmuls whose weight (input 1) is stored flat, packed in one dimension
_PACKED_1D_OPS = ("MatMulBnb4", "MatMulFpQ4")
#: operator names that consume quantized tensors (an integer weight there is never a float one)
_QUANT_OP_WORDS = re.compile(r"Quant|Integer|NBits|Bnb|QLinear|^Q[A-Z]|FpQ|QMoE|QOrdered")


def _final_dtype(const: _Const, steps: list[_Step]) -> np.dtype:
    """The dtype a chain ends in: the last cast / (de)quantization's, else the constant's."""
    for step in reversed(steps):
        if step.to is not None:
            return np.dtype(step.to)
    return const.dtype


def _value_kind(dtype: np.dtype) -> str:
    """``"float"`` (float16/32/64, bfloat16, float8, float4), ``"int"`` (integers, int4 /
    uint4 included) or ``"other"`` (bool, strings, complex)."""
    import ml_dtypes

    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return "float"
    if dtype.kind in "iu":
        return "int"
    if dtype.kind == "V":
        try:
            ml_dtypes.finfo(dtype)
            return "float"
        except (TypeError, ValueError):
            pass
        try:
            ml_dtypes.iinfo(dtype)
            return "int"
        except (TypeError, ValueError):
            pass
    return "other"


def _channel_vector(param: np.ndarray, length: int) -> np.ndarray:
    """A per-channel scale / zero point stored with unit axes (``(C, 1, 1)``) as a vector."""
    param = np.asarray(param)
    if param.size == length and param.ndim > 1 and max(param.shape) == length:
        return param.reshape(-1)
    return param


def _quant_label(dtype: np.dtype, step: _Step) -> str:
    """The ``quant`` attribute of a weight dequantized by ``step`` from ``dtype`` codes."""
    if step.block:
        return _quant.label(np.dtype(dtype).name, "block", step.block)
    scheme = "tensor" if np.asarray(step.scale).size == 1 else "channel"
    return _quant.label(np.dtype(dtype).name, scheme)


def _steps_label(steps: list[_Step]) -> str:
    """The ``quant`` attribute of a chain: its first (de)quantization, else "" (float)."""
    for step in steps:
        if step.op == "dequantize":
            return _quant_label(step.in_dtype, step)
        if step.op == "quantize":
            return _quant_label(step.to, step)
    return ""


#: suffixes onnxruntime's quantizers append to the name of a weight they quantize
_QUANT_SUFFIX = re.compile(
    r"(_quantized|_Transposed|_transposed|_DQ|_QDQ|_Q[2-8]|_q[2-8]|_int[48]|_uint[48]|_fp16)$"
)


def _base_name(name: str) -> str:
    """``name`` without the suffixes of onnxruntime's quantizers: ``fc1.weight_Transposed_
    quantized`` and ``fc1.weight_Q4`` are ``fc1.weight``, so a quantized model's layers get the
    paths of the float model's (``rmtkit compare float.onnx int8.onnx``, ``base=``)."""
    while True:
        shorter = _QUANT_SUFFIX.sub("", name)
        if shorter == name or not shorter:
            return name
        name = shorter


def _node_path(entry: _Entry) -> str:
    name = _base_name(entry.const.name)
    for suffix in (".weight", ".kernel", "/kernel", "/weight"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return sanitize_path(name[: -len(suffix)])
    node_name = entry.node_name.strip("/")
    if node_name:
        parts = node_name.split("/")
        return sanitize_path("/".join(parts[:-1]) if len(parts) > 1 else parts[0])
    return sanitize_path(name)


# ---------------------------------------------------------------------------- reading
def _read_layer(const: _Const, steps: list[_Step], where: str) -> np.ndarray:
    """A layer's stored tensor through its chain; any failure is a CorruptModelError naming the
    file and the tensor (the data of a tensor whose header was consistent can still be bad)."""
    try:
        a = const.load()
        for step in steps:
            a = _apply(a, step)
        return a
    except (RmtkitError, MemoryError):
        raise
    except FileNotFoundError as err:
        raise MissingDataError(
            f"{where}: external data of tensor {const.name!r} vanished ({err})"
        ) from err
    except Exception as err:
        raise CorruptModelError(
            f"{where}: tensor {const.name!r} ({const.dtype}, shape {const.shape}) cannot be "
            f"read ({type(err).__name__}: {err})"
        ) from err


def _read(path: str | os.PathLike) -> tuple[Any, str, Path]:
    path = Path(path)
    where = str(path)
    if not is_file(path):
        raise MissingDataError(f"{where}: no such ONNX file")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise CorruptModelError(
            f"{where}: not a readable ONNX model (truncated or corrupt protobuf: {err})"
        ) from err
    if not model.HasField("graph"):
        raise CorruptModelError(f"{where}: the ONNX model has no graph")
    return model, where, path.parent


def from_onnx(
    model: Any, *, base_dir: str | os.PathLike | None = None, name: str | None = None
) -> xr.DataTree:
    """Weight collection of an ONNX model (``ModelProto``) or ``.onnx`` file.

    Parameters
    ----------
    model : onnx.ModelProto or path
        The model; a path is read without its external data, which is mapped lazily.
    base_dir : path, optional
        Folder of the external data files of an in-memory model. Default: the file's folder
        (path input) or the current directory.
    name : str, optional
        How the model is named in error messages.

    Raises
    ------
    CorruptModelError, MissingDataError, UnsupportedModelError
        Truncated file / inconsistent tensor; missing external data; no analyzable layer.
    """
    if isinstance(model, (str, os.PathLike)):
        model, where, folder = _read(model)
        base = Path(base_dir) if base_dir is not None else folder
    elif isinstance(model, onnx.ModelProto):
        where = name or f"onnx.ModelProto {model.graph.name!r}"
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        raise UnsupportedModelError(
            f"from_onnx takes an onnx.ModelProto or a path, got {type(model).__name__}"
        )
    try:
        entries = _Graph(model, where, base).plan()
    except (RmtkitError, MemoryError, RecursionError):
        raise
    except Exception as err:  # an inconsistency no check above anticipated
        raise CorruptModelError(
            f"{where}: malformed ONNX graph ({type(err).__name__}: {err})"
        ) from err
    nodes = []
    for i, e in enumerate(entries):
        const, steps = e.const, list(e.steps)

        def load(const=const, steps=steps, skip=e.skip):
            if skip:  # never read codes as weights
                raise UnsupportedModelError(f"{where}: tensor {const.name!r}: {skip}")
            return _read_layer(const, steps, where)

        final_dtype = _final_dtype(const, steps)
        if e.skip or _value_kind(final_dtype) != "float":
            final_dtype = np.dtype(np.float32)
        lazy = LazyArray(load, e.shape, final_dtype)
        attrs = {"quant": e.quant}
        if e.skip:
            attrs[SKIP_ATTR] = e.skip
        nodes.append(
            (
                _node_path(e),
                weight_node(
                    lazy,
                    kind=e.kind,
                    source=const.name,
                    framework="onnx",
                    op=e.op,
                    layer_id=i,
                    dtype=_dtype_str(const.proto.data_type),
                    perm=e.perm,
                    groups=e.groups,
                    attrs=attrs,
                ),
            )
        )
    return finish(nodes, where)


load = from_onnx


# ---------------------------------------------------------------------------- writing
def save(model: Any, collection: xr.DataTree, path: str | os.PathLike | None = None) -> Any:
    """Write the weights of ``collection`` back into a copy of ``model``; save it to ``path``.

    Layers are matched to the model's tensors by their ``source`` attribute; the canonical
    ``W`` is mapped back through the layer's chain (transposes, reshapes, casts; quantized
    weights are re-quantized with their scale and zero point, so a changed weight is rounded
    to the quantization grid). Layers of ``collection`` absent from the model raise.

    Parameters
    ----------
    model : onnx.ModelProto or path
        The model the collection came from (not modified).
    collection : xarray.DataTree
        A weight collection of this model, e.g. after ``rmtkit.sharpen``.
    path : path, optional
        Where to write the new ``.onnx`` (tensors over 2 GB in all go to external data next to
        it). Default: do not write.

    Returns
    -------
    onnx.ModelProto
        The new model, with all its tensors in memory.
    """
    if isinstance(model, (str, os.PathLike)):
        where = str(model)
        try:
            model = onnx.load_model(str(model), load_external_data=True)
        except FileNotFoundError as err:
            raise MissingDataError(f"{where}: external data missing ({err})") from err
        except Exception as err:
            raise CorruptModelError(f"{where}: not a readable ONNX model ({err})") from err
    elif isinstance(model, onnx.ModelProto):
        where = f"onnx.ModelProto {model.graph.name!r}"
        model = copy.deepcopy(model)
    else:
        raise UnsupportedModelError(
            f"save takes an onnx.ModelProto or a path, got {type(model).__name__}"
        )
    entries = {e.const.name: e for e in _Graph(model, where, Path.cwd()).plan()}
    for layer_path, w in iter_layers(collection):
        source = w.attrs.get("source")
        e = entries.get(source)
        if e is None:
            raise InvalidWeightsError(
                f"layer {layer_path!r}: its source tensor {source!r} is not a layer of {where}"
            )
        if e.skip:
            raise UnsupportedModelError(
                f"layer {layer_path!r}: {e.skip}; rmtkit cannot write its weights back"
            )
        a = np.asarray(w.values)
        expected = e.shape if e.perm is None else tuple(e.shape[p] for p in e.perm)
        if a.shape != expected:
            raise InvalidWeightsError(
                f"layer {layer_path!r}: W has shape {a.shape}, the model's tensor {source!r} "
                f"needs {expected}"
            )
        if e.perm is not None:
            a = np.transpose(a, np.argsort(e.perm))
        a = a.astype(e.steps[-1].to if e.steps and e.steps[-1].to is not None else a.dtype)
        for step in reversed(e.steps):
            a = _invert(a, step)
        new = numpy_helper.from_array(np.ascontiguousarray(a.astype(e.const.dtype)), source)
        if e.const.node is None:
            e.const.proto.CopyFrom(new)
        else:
            for attr in e.const.node.attribute:
                if attr.name == "value":
                    attr.t.CopyFrom(new)
    if path is not None:
        big = sum(len(t.raw_data) for t in model.graph.initializer) > 1_800_000_000
        if big:
            onnx.save_model(
                model,
                str(path),
                save_as_external_data=True,
                location=Path(path).name + ".data",
            )
        else:
            onnx.save_model(model, str(path))
    return model


def from_object(obj: Any, **kw: Any) -> xr.DataTree | None:
    """The collection of an ``onnx.ModelProto`` (:func:`from_onnx`); None for anything else."""
    if isinstance(obj, onnx.ModelProto):
        return from_onnx(obj, **kw)
    return None


def write_back(model: Any, collection: xr.DataTree) -> Any:
    """``model`` (an ``onnx.ModelProto`` or a ``.onnx`` path) with the weights of
    ``collection``, as :func:`save` returns it; None for anything else."""
    if isinstance(model, onnx.ModelProto) or (
        isinstance(model, str) and model.lower().endswith(".onnx")
    ):
        return save(model, collection)
    return None
