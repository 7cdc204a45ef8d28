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
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from rmtkit.adapters._common import finish, require

from rmtkit.collection import LazyArray, iter_layers, sanitize_path, weight_node
from rmtkit.errors import (
    CorruptModelError,
    InvalidWeightsError,
    MissingDataError,
    UnsupportedModelError,
)

onnx = require("onnx", extra="onnx", who="rmtkit.adapters.onnx")
from onnx import numpy_helper  # noqa: E402

__all__ = ["from_onnx", "load", "save"]


# ---------------------------------------------------------------------------- tensors
def _np_dtype(data_type: int) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))


def _dtype_str(data_type: int) -> str:
    try:
        return _np_dtype(data_type).name
    except Exception:  # a type numpy cannot name
        return onnx.TensorProto.DataType.Name(data_type).lower()


@dataclass
class _Const:
    """A constant tensor of the graph: initializer or Constant node value."""

    name: str
    proto: Any  # onnx.TensorProto
    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], np.ndarray]
    node: Any = None  # the Constant node, when not an initializer


def _const(proto, name: str, where: str, base_dir: Path | None, node=None) -> _Const:
    shape = tuple(int(d) for d in proto.dims)
    dtype = _np_dtype(proto.data_type)
    count = int(np.prod(shape, dtype=np.int64))
    if proto.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in proto.external_data}
        if "location" not in info:
            raise CorruptModelError(f"{where}: tensor {name!r} has external data but no location")
        if base_dir is None:
            raise MissingDataError(
                f"{where}: tensor {name!r} refers to external data {info['location']!r}; pass "
                "the model's folder as base_dir= (or load the .onnx file by path)"
            )
        file = base_dir / info["location"]
        offset = int(info.get("offset", 0))
        length = int(info.get("length", count * dtype.itemsize))
        if not file.is_file():
            raise MissingDataError(
                f"{where}: external data file {str(file)!r} of tensor {name!r} does not exist"
            )
        if length != count * dtype.itemsize or file.stat().st_size < offset + length:
            raise CorruptModelError(
                f"{where}: external data of tensor {name!r} in {str(file)!r} is too short or "
                f"inconsistent (offset {offset}, length {length}, shape {shape}, {dtype})"
            )

        def load(file=file, offset=offset):
            mm = np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
            out = np.array(mm)  # one copy; the map closes with mm
            del mm
            return out

        return _Const(name, proto, shape, dtype, load, node)
    if proto.HasField("raw_data") and dtype.itemsize > 0 and dtype.kind != "V":
        if len(proto.raw_data) != count * dtype.itemsize:
            raise CorruptModelError(
                f"{where}: tensor {name!r} holds {len(proto.raw_data)} bytes, expected "
                f"{count * dtype.itemsize} for shape {shape} of {dtype}"
            )
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
        rep = np.repeat(param, block, axis=axis)
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


def _reshape_target(in_shape, target) -> tuple[int, ...]:
    target = [int(t) for t in target]
    out = [in_shape[i] if t == 0 else t for i, t in enumerate(target)]
    if -1 in out:
        known = int(np.prod([t for t in out if t != -1], dtype=np.int64))
        out[out.index(-1)] = int(np.prod(in_shape, dtype=np.int64)) // max(known, 1)
    return tuple(out)


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
                if value is not None and not isinstance(value, (int, float, bytes, list)):
                    self.consts[node.output[0]] = _const(
                        value, node.output[0], where, base_dir, node=node
                    )
        self.nodes = list(g.node)

    def small(self, name: str) -> np.ndarray | None:
        c = self.consts.get(name)
        return None if c is None else c.load()

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
            op = node.op_type
            if op == "Identity":
                continue
            if op == "Transpose":
                perm = _attr(node, "perm")
                perm = tuple(perm) if perm is not None else tuple(reversed(range(len(shape))))
                steps.append(_Step("transpose", shape, dtype, perm=perm))
                shape = tuple(shape[p] for p in perm)
            elif op == "Cast":
                to = _np_dtype(_attr(node, "to"))
                steps.append(_Step("cast", shape, dtype, to=to))
                dtype = to
            elif op == "Reshape":
                target = self.small(node.input[1]) if len(node.input) > 1 else None
                if target is None:
                    return None
                new = _reshape_target(shape, target)
                steps.append(_Step("reshape", shape, dtype, shape=new))
                shape = new
            elif op == "QuantizeLinear":  # a float weight quantized in the graph (QDQ models)
                scale = self.small(node.input[1]) if len(node.input) > 1 else None
                zp = None
                if len(node.input) > 2 and node.input[2]:
                    zp = self.small(node.input[2])
                if scale is None or (len(node.input) > 2 and node.input[2] and zp is None):
                    return None
                to = zp.dtype if zp is not None else np.dtype(np.uint8)
                steps.append(
                    _Step(
                        "quantize", shape, dtype, to=to, scale=scale, zero_point=zp,
                        axis=int(_attr(node, "axis", 1)), block=int(_attr(node, "block_size", 0)),
                    )
                )
                dtype = to
            else:  # DequantizeLinear
                scale = self.small(node.input[1]) if len(node.input) > 1 else None
                if scale is None:
                    return None
                zp = None
                if len(node.input) > 2 and node.input[2]:
                    zp = self.small(node.input[2])
                    if zp is None:
                        return None
                to = np.dtype(np.float32) if scale.dtype.itemsize < 4 else scale.dtype
                steps.append(
                    _Step(
                        "dequantize", shape, dtype, to=to, scale=scale, zero_point=zp,
                        axis=int(_attr(node, "axis", 1)), block=int(_attr(node, "block_size", 0)),
                    )
                )
                dtype = to
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
            if const.name in used or not np.issubdtype(
                steps[-1].to if steps and steps[-1].to is not None else const.dtype, np.number
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
                perm = None if _attr(node, "transB", 0) else (1, 0)
            elif op in ("Conv", "ConvTranspose"):
                if len(shape) not in (3, 4):
                    continue
                kind = "conv1d" if len(shape) == 3 else "conv2d"
                groups = int(_attr(node, "group", 1))
                if op == "ConvTranspose":
                    perm = (1, 0) + tuple(range(2, len(shape)))
            else:  # Gather
                if len(shape) != 2 or int(_attr(node, "axis", 0)) != 0:
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
def _read(path: str | os.PathLike) -> tuple[Any, str, Path]:
    path = Path(path)
    where = str(path)
    if not path.is_file():
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
    entries = _Graph(model, where, base).plan()
    nodes = []
    for i, e in enumerate(entries):
        const, steps = e.const, list(e.steps)

        def load(const=const, steps=steps):
            a = const.load()
            for step in steps:
                a = _apply(a, step)
            return a

        final_dtype = steps[-1].to if steps and steps[-1].to is not None else const.dtype
        lazy = LazyArray(load, e.shape, final_dtype)
        nodes.append(
            (
                _node_path(e),
                weight_node(
                    lazy, kind=e.kind, source=const.name, framework="onnx", op=e.op,
                    layer_id=i, dtype=_dtype_str(const.proto.data_type), perm=e.perm,
                    groups=e.groups,
                ),
            )
        )
    return finish(nodes, where)


load = from_onnx


# ---------------------------------------------------------------------------- writing
def save(
    model: Any, collection: xr.DataTree, path: str | os.PathLike | None = None
) -> Any:
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
                model, str(path), save_as_external_data=True,
                location=Path(path).name + ".data",
            )
        else:
            onnx.save_model(model, str(path))
    return model

