"""ONNX adapter: ``.onnx`` files and in-memory ``onnx.ModelProto`` -> weight collection.

Graph-aware: a tensor is a layer when it is the weight input of

- ``MatMul``, input B (2-D): dense; B is ``(in, out)``: transposed;
- ``Gemm``, input B: dense; transposed unless ``transB=1`` (``transA`` does not matter);
- ``Conv``, input W: conv1d / conv2d, ``(out, in/groups, k...)`` as stored;
- ``ConvTranspose``, input W: conv1d / conv2d, stored ``(in, out/groups, k...)``: axes 0, 1
  swapped;
- ``Gather`` (``axis=0``, non-constant indices), input data (2-D): embedding ``(vocab, dim)``.

where the weight input is an initializer or a ``Constant`` node output, possibly reached through
``Transpose``, ``Cast``, ``Reshape``, ``Identity``, ``QuantizeLinear`` and ``DequantizeLinear``
nodes (quantized weights are dequantized, per-tensor, per-axis or blocked; a float weight
quantized in the graph, as QDQ models do, is read as the dequantized value the graph computes).
Initializers feeding no such op (biases, norms, shapes) are not layers; a tensor used by several
ops (tied weights) is one layer, at its first use. ``layer_id`` follows the node order, which
ONNX requires to be topological.

Node paths come from the tensor name when it is a module path (``encoder.fc1.weight`` ->
``encoder/fc1``), else from the node name (``/encoder/fc1/MatMul`` -> ``encoder/fc1``).

Tensors stay where they are until read: external data is memory-mapped at read time (files are
checked for existence and size when loading), in-memory tensors are converted per read.

Write-back: :func:`save` puts (modified) weights of a collection back into a copy of the model,
inverting the chain (quantized weights are re-quantized with their own scale and zero point).
"""

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from rmtkit.adapters._common import finish, is_file, require
from rmtkit.collection import LazyArray, iter_layers, sanitize_path, weight_node
from rmtkit.errors import (
    CorruptModelError,
    InvalidWeightsError,
    MissingDataError,
    RmtkitError,
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
    op: str  # "transpose" | "reshape" | "cast" | "quantize" | "dequantize"
    in_shape: tuple[int, ...]
    in_dtype: np.dtype
    perm: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None
    to: np.dtype | None = None
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 1
    block: int = 0


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
    scale = _broadcast(step.scale, a.shape, axis, step.block)
    x = a.astype(np.float32)
    if step.zero_point is not None:
        x = x - _broadcast(step.zero_point, a.shape, axis, step.block).astype(np.float32)
    return (x * scale.astype(np.float32)).astype(to)


def _invert(a: np.ndarray, step: _Step) -> np.ndarray:
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
    scale = _broadcast(step.scale, a.shape, axis, step.block).astype(np.float32)
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
    if zp is not None and zp.shape != scale.shape:
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

    def _quant_step(self, node, op: str, shape, dtype) -> _Step | None:
        """The (de)quantize step of ``node`` on a ``shape`` tensor; None if not constant."""
        scale = self.small(node.input[1]) if len(node.input) > 1 else None
        zp = None
        if len(node.input) > 2 and node.input[2]:
            zp = self.small(node.input[2])
            if zp is None:
                return None
        if scale is None:
            return None
        axis = _int_attr(node, "axis", 1, self.where)
        block = _int_attr(node, "block_size", 0, self.where)
        if not _quant_params_fit(shape, scale, zp, axis, block):
            raise self._bad(
                node,
                f"scale {scale.shape} / zero point "
                f"{None if zp is None else zp.shape} (axis={axis}, "
                f"block_size={block}) do not fit the tensor {shape}",
            )
        if op == "quantize":
            to = zp.dtype if zp is not None else np.dtype(np.uint8)
        else:
            to = np.dtype(np.float32) if scale.dtype.itemsize < 4 else scale.dtype
        return _Step(op, shape, dtype, to=to, scale=scale, zero_point=zp, axis=axis, block=block)

    def _step(self, node, shape, dtype) -> _Step | None:
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
            return self._quant_step(node, "quantize", shape, dtype)
        return self._quant_step(node, "dequantize", shape, dtype)

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
            step = self._step(node, shape, dtype)
            if step is None:
                return None
            steps.append(step)
            if step.op == "transpose":
                shape = tuple(shape[p] for p in step.perm)
            elif step.op == "reshape":
                shape = step.shape
            dtype = step.to if step.to is not None else dtype
        return const, steps, shape

    def plan(self) -> list[_Entry]:
        entries: list[_Entry] = []
        used: set[str] = set()
        for node in self.nodes:
            op = node.op_type
            if op in ("MatMul", "Gemm", "Conv", "ConvTranspose"):
                idx = 1
            elif op == "Gather":
                idx = 0
            else:
                continue
            if len(node.input) <= idx:
                continue
            found = self.resolve(node.input[idx])
            if found is None:
                continue
            const, steps, shape = found
            if (
                const.name in used
                or not np.issubdtype(
                    steps[-1].to if steps and steps[-1].to is not None else const.dtype, np.number
                )
                or 0 in shape
            ):
                continue
            perm: tuple[int, ...] | None = None
            groups = None
            if op == "MatMul":
                if len(shape) != 2:
                    continue
                kind, perm = "dense", (1, 0)
            elif op == "Gemm":
                if len(shape) != 2:
                    continue
                kind = "dense"
                perm = None if _int_attr(node, "transB", 0, self.where) else (1, 0)
            elif op in ("Conv", "ConvTranspose"):
                if len(shape) not in (3, 4):
                    continue
                kind = "conv1d" if len(shape) == 3 else "conv2d"
                groups = _int_attr(node, "group", 1, self.where)
                if groups < 1:
                    raise self._bad(node, f"group must be >= 1, got {groups}")
                if op == "ConvTranspose":
                    perm = (1, 0) + tuple(range(2, len(shape)))
            else:  # Gather
                if len(shape) != 2 or _int_attr(node, "axis", 0, self.where) != 0:
                    continue
                if len(node.input) > 1 and self.resolve(node.input[1]) is not None:
                    continue  # constant indices: a shape computation, not an embedding
                kind = "embedding"
            used.add(const.name)
            entries.append(_Entry(const, steps, op, node.name, kind, perm, groups, shape))
        return entries


def _node_path(entry: _Entry) -> str:
    name = entry.const.name
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

        def load(const=const, steps=steps):
            return _read_layer(const, steps, where)

        final_dtype = steps[-1].to if steps and steps[-1].to is not None else const.dtype
        lazy = LazyArray(load, e.shape, final_dtype)
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
