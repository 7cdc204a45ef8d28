"""PyTorch adapter: ``nn.Module``, state dicts and ``.pt``/``.pth``/``.bin`` files.

Modules (``from_torch``), canonical layout per module type:

- ``Linear`` (and subclasses): dense, ``weight`` ``(out, in)`` as is;
- ``Conv1d`` / ``Conv2d``: conv1d / conv2d, ``weight`` ``(out, in/groups, k...)`` as is;
- ``ConvTranspose1d`` / ``ConvTranspose2d``: ``weight`` ``(in, out/groups, k...)``, axes 0 and 1
  swapped;
- ``Embedding`` / ``EmbeddingBag``: embedding, ``weight`` ``(vocab, dim)`` as is;
- Hugging Face GPT-2 ``Conv1D`` (recognised by class name): dense, ``(in, out)`` transposed;
- ``MultiheadAttention``: the packed ``in_proj_weight`` split into dense ``<path>/q``, ``/k``,
  ``/v`` (or the separate ``q/k/v_proj_weight``); ``out_proj`` is a Linear child.

``layer_id`` is the definition order of ``named_modules()`` or, given ``example_inputs``, the
order in which a forward pass calls the modules. A parameter shared by several modules (tied
weights) is one layer. Tensors are read when ``W`` is read (bf16/fp16 widened to float32).

State dicts and files (``from_state_dict``, ``load``) have no modules: kinds come from names
and shapes (see :mod:`rmtkit.adapters._common`). Files are read with ``weights_only=True``
(memory-mapped when the file format allows).

Write-back: :func:`assign` copies the (modified) ``W`` of a collection into a module's
parameters, in place.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from rmtkit.adapters._common import NamedTensor, finish, from_named_tensors, is_file, require
from rmtkit.adapters._packed import quant_config
from rmtkit.collection import LazyArray, iter_layers, sanitize_path, weight_node
from rmtkit.errors import (
    CorruptModelError,
    InvalidWeightsError,
    MissingDataError,
    UnsupportedModelError,
)

torch = require("torch", extra="torch", who="rmtkit.adapters.torch")
nn = torch.nn

__all__ = [
    "assign",
    "biases",
    "from_object",
    "from_state_dict",
    "from_torch",
    "load",
    "write_back",
]


def _dtype_name(t) -> str:
    return str(t.dtype).removeprefix("torch.")


def _to_numpy(t) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t.numpy()


def _lazy(t, rows: slice | None = None) -> LazyArray:
    shape = tuple(t.shape)
    if rows is not None:
        shape = (rows.stop - rows.start,) + shape[1:]
    dtype = np.float64 if t.dtype == torch.float64 else np.float32
    return LazyArray(lambda t=t, rows=rows: _to_numpy(t if rows is None else t[rows]), shape, dtype)


def _usable(p) -> bool:
    return (
        isinstance(p, torch.Tensor)
        and not isinstance(p, nn.parameter.UninitializedParameter)
        and p.device.type != "meta"
        and p.is_floating_point()
        and p.numel() > 0
    )


def _module_layers(name: str, m) -> list[tuple[str, str, Any, dict]]:
    """``(suffix, kind, tensor, weight_node kwargs)`` for the layers module ``m`` holds."""
    if isinstance(m, nn.MultiheadAttention):
        out = []
        if m.in_proj_weight is not None:
            e = m.in_proj_weight.shape[0] // 3
            for i, part in enumerate("qkv"):
                rows = slice(i * e, (i + 1) * e)
                out.append(
                    (
                        part,
                        "dense",
                        (m.in_proj_weight, rows),
                        {
                            "source": _join(name, "in_proj_weight"),
                            "attrs": {"source_slice": f"{rows.start}:{rows.stop}"},
                        },
                    )
                )
        else:
            for part in "qkv":
                w = getattr(m, f"{part}_proj_weight")
                src = {"source": _join(name, f"{part}_proj_weight")}
                out.append((part, "dense", (w, None), src))
        return out
    w = getattr(m, "weight", None)
    if not _usable(w):
        return []
    src = {"source": _join(name, "weight")}
    if isinstance(m, nn.Linear) and w.ndim == 2:
        return [("", "dense", (w, None), src)]
    if isinstance(m, (nn.Conv1d, nn.Conv2d)) and w.ndim in (3, 4):
        kind = "conv1d" if w.ndim == 3 else "conv2d"
        return [("", kind, (w, None), {**src, "groups": m.groups})]
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)) and w.ndim in (3, 4):
        kind = "conv1d" if w.ndim == 3 else "conv2d"
        perm = (1, 0) + tuple(range(2, w.ndim))
        return [("", kind, (w, None), {**src, "groups": m.groups, "perm": perm})]
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and w.ndim == 2:
        return [("", "embedding", (w, None), src)]
    if type(m).__name__ == "Conv1D" and w.ndim == 2:  # Hugging Face GPT-2: (in, out)
        return [("", "dense", (w, None), {**src, "perm": (1, 0)})]
    return []


def _with_attrs(kw: dict, **attrs) -> dict:
    """``weight_node`` keyword arguments ``kw`` with more node ``attrs``."""
    return {**kw, "attrs": {**kw.get("attrs", {}), **attrs}}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def from_torch(module: Any, *, example_inputs: tuple | None = None) -> xr.DataTree:
    """Weight collection of a ``torch.nn.Module`` (see the module docstring for the layouts).

    Parameters
    ----------
    module : torch.nn.Module
    example_inputs : tuple, optional
        Positional inputs of one forward pass; when given, ``layer_id`` follows the order in
        which the pass calls the layers (modules it does not call follow, in definition order).
    """
    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(
            f"from_torch takes a torch.nn.Module, got {type(module).__name__}"
        )
    named = list(module.named_modules())
    order = {id(m): i for i, (_, m) in enumerate(named)}
    if example_inputs is not None:
        calls: list[int] = []
        hooks = [
            m.register_forward_pre_hook(lambda mod, args: calls.append(id(mod))) for _, m in named
        ]
        try:
            with torch.no_grad():
                module(*example_inputs)
        finally:
            for h in hooks:
                h.remove()
        first: dict[int, int] = {}
        for c in calls:
            first.setdefault(c, len(first))
        n = len(first)
        order = {id(m): first.get(id(m), n + i) for i, (_, m) in enumerate(named)}
        named.sort(key=lambda item: order[id(item[1])])
    nodes = []
    seen: set[int] = set()
    position = {id(m): i for i, (_, m) in enumerate(module.named_modules())}
    for name, m in named:
        base = sanitize_path(name, default=type(m).__name__.lower())
        for suffix, kind, (w, rows), kw in _module_layers(name, m):
            key = (id(w), None if rows is None else rows.start)
            if key in seen:
                continue
            seen.add(key)
            nodes.append(
                (
                    f"{base}/{suffix}" if suffix else base,
                    weight_node(
                        _lazy(w, rows),
                        kind=kind,
                        framework="torch",
                        op=type(m).__name__,
                        layer_id=len(nodes),
                        dtype=_dtype_name(w),
                        **_with_attrs(kw, module_index=position[id(m)]),
                    ),
                )
            )
    return finish(nodes, f"torch module {type(module).__name__}")


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = _join(prefix, str(k))
        if isinstance(v, Mapping):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _state_dict_of(obj: Any) -> dict[str, Any]:
    """The tensors of a state dict or a checkpoint dict holding one."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(
                isinstance(v, torch.Tensor) for v in _flatten(inner).values()
            ):
                return _flatten(inner)
        return _flatten(obj)
    raise UnsupportedModelError(f"expected a state dict, got {type(obj).__name__}")


def from_state_dict(
    state_dict: Mapping[str, Any], *, name: str = "state dict", config: dict | None = None
) -> xr.DataTree:
    """Weight collection of a state dict (name -> tensor), kinds inferred from names and shapes.

    Order: the dict's order. Nested dicts are flattened with ``.``; a checkpoint dict with a
    ``state_dict``/``model`` entry uses that entry.
    """
    tensors = [
        NamedTensor(
            k,
            tuple(v.shape),
            np.dtype(np.float64 if v.dtype == torch.float64 else np.float32),
            lambda v=v: _to_numpy(v),
            is_float=v.is_floating_point(),
            source_dtype=_dtype_name(v),
            raw=lambda v=v: _raw_numpy(v),
        )
        for k, v in _state_dict_of(state_dict).items()
        if isinstance(v, torch.Tensor) and v.device.type != "meta"
    ]
    nodes = from_named_tensors(tensors, framework="torch", config=config or {}, where=name)
    return finish(nodes, name)


def _raw_numpy(t) -> np.ndarray:
    """A tensor's values in its own dtype (bfloat16 / float8 widened to float32)."""
    t = t.detach().to("cpu")
    try:
        return t.numpy()
    except TypeError:  # a dtype numpy lacks
        return t.to(torch.float32).numpy()


def load(path: str | os.PathLike) -> xr.DataTree:
    """Weight collection of a ``.pt``/``.pth``/``.bin`` file (``torch.load(weights_only=True)``)."""
    path = Path(path)
    where = str(path)
    if not is_file(path):
        raise MissingDataError(f"{where}: no such file")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        msg = str(err)
        if "weights_only" in msg or "Unsupported global" in msg:
            raise UnsupportedModelError(
                f"{where}: holds objects other than tensors, refused by "
                f"torch.load(weights_only=True): {msg.splitlines()[0]}"
            ) from err
        raise CorruptModelError(
            f"{where}: not a readable PyTorch file (truncated or corrupt: "
            f"{msg.splitlines()[0] if msg else type(err).__name__})"
        ) from err
    if isinstance(obj, nn.Module):
        return from_torch(obj)
    if not isinstance(obj, Mapping):
        raise UnsupportedModelError(f"{where}: holds a {type(obj).__name__}, expected a state dict")
    return from_state_dict(obj, name=where, config=quant_config(path.parent))


def assign(module: Any, collection: xr.DataTree) -> Any:
    """Copy the ``W`` of every layer of ``collection`` into ``module``'s parameters, in place.

    Layers are matched by their ``source`` attribute (the parameter name, e.g. ``fc1.weight``;
    ``source_slice`` rows for split q/k/v); the canonical layout is mapped back to the module's
    (transposed for GPT-2 ``Conv1D``, axes swapped for ``ConvTranspose``). Returns ``module``.

    Raises
    ------
    InvalidWeightsError
        A layer whose source is not a parameter of ``module``, or whose shape does not fit;
        nothing is written in that case.
    """
    params = dict(module.named_parameters(remove_duplicate=False))
    writes = []
    for layer_path, w in iter_layers(collection):
        source = w.attrs.get("source")
        p = params.get(source)
        if p is None:
            raise InvalidWeightsError(
                f"layer {layer_path!r}: {source!r} is not a parameter of the module"
            )
        a = np.asarray(w.values)
        op = w.attrs.get("op", "")
        if op == "Conv1D":
            a = a.T
        elif op.startswith("ConvTranspose"):
            a = np.swapaxes(a, 0, 1)
        target = p
        sl = w.attrs.get("source_slice")
        rows = None
        if sl:
            start, stop = (int(s) for s in str(sl).split(":"))
            rows = slice(start, stop)
            target = p[rows]
        if tuple(target.shape) != a.shape:
            raise InvalidWeightsError(
                f"layer {layer_path!r}: W maps to shape {a.shape}, parameter {source!r} "
                f"is {tuple(target.shape)}"
            )
        writes.append((p, rows, a))
    with torch.no_grad():
        for p, rows, a in writes:
            t = torch.from_numpy(np.ascontiguousarray(a)).to(dtype=p.dtype, device=p.device)
            if rows is None:
                p.copy_(t)
            else:
                p[rows].copy_(t)
    return module


def from_object(obj: Any, **kw: Any) -> xr.DataTree | None:
    """The collection of a ``torch.nn.Module`` (:func:`from_torch`) or of a state dict of
    tensors (:func:`from_state_dict`); None for anything else (``rmtkit.load`` goes on)."""
    if isinstance(obj, nn.Module):
        return from_torch(obj, **kw)
    if isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        return from_state_dict(obj, **kw)
    return None


def write_back(model: Any, collection: xr.DataTree) -> Any:
    """A copy of the ``torch.nn.Module`` ``model``, or a new flat state dict, with the
    weights of ``collection`` (:func:`assign`; ``model`` is not modified); None for
    anything else (a checkpoint dict nesting its state dict included)."""
    if isinstance(model, nn.Module):
        import copy

        return assign(copy.deepcopy(model), collection)
    if (
        isinstance(model, Mapping)
        and model
        and all(isinstance(v, torch.Tensor) for v in model.values())
    ):
        return _assign_state_dict(model, collection)
    return None


def _bias_layers(module: Any) -> dict[str, np.ndarray]:
    """Biases of the layers of a ``torch.nn.Module``, by the node path of their weight."""
    out: dict[str, np.ndarray] = {}
    for name, m in module.named_modules():
        base = sanitize_path(name, default=type(m).__name__.lower())
        layers = _module_layers(name, m)
        if isinstance(m, nn.MultiheadAttention):
            b = m.in_proj_bias
            if _usable(b):
                e = b.shape[0] // 3
                for i, part in enumerate("qkv"):
                    out[f"{base}/{part}"] = _to_numpy(b[i * e : (i + 1) * e])
            continue
        b = getattr(m, "bias", None)
        if layers and _usable(b) and b.ndim == 1:
            out[base] = _to_numpy(b)
    return out


def biases(obj: Any) -> dict[str, np.ndarray] | None:
    """The biases of a ``torch.nn.Module`` or a flat state dict, by the node path of the
    layer's weight in its collection (:func:`from_torch`, :func:`from_state_dict`); layers
    without a bias are absent. None for anything else.

    A state dict's ``<name>.bias`` belongs to the layer of ``<name>.weight``.
    """
    if isinstance(obj, nn.Module):
        return _bias_layers(obj)
    if isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        tensors = _state_dict_of(obj)
        out = {}
        for key, value in tensors.items():
            if (
                key.endswith(".bias")
                and isinstance(value, torch.Tensor)
                and value.ndim == 1
                and f"{key[:-5]}.weight" in tensors
            ):
                out[sanitize_path(key[:-5])] = _to_numpy(value)
        return out
    return None


def _assign_state_dict(state_dict: Mapping[str, Any], collection: xr.DataTree) -> dict:
    """A new flat state dict: ``state_dict`` with the weights of ``collection`` (by their
    ``source`` tensor names, canonical layout mapped back as :func:`assign` does)."""
    out = dict(state_dict)
    for layer_path, w in iter_layers(collection):
        source = w.attrs.get("source")
        old = out.get(source)
        if not isinstance(old, torch.Tensor):
            raise InvalidWeightsError(
                f"layer {layer_path!r}: {source!r} is not a tensor of the state dict"
            )
        a = np.asarray(w.values)
        if w.attrs.get("op", "") == "Conv1D":
            a = a.T
        sl = w.attrs.get("source_slice")
        new = torch.from_numpy(np.ascontiguousarray(a)).to(dtype=old.dtype, device=old.device)
        if sl:
            start, stop = (int(s) for s in str(sl).split(":"))
            whole = out[source] if out[source] is not old else old.clone()
            whole[start:stop] = new
            new = whole
        if tuple(new.shape) != tuple(old.shape):
            raise InvalidWeightsError(
                f"layer {layer_path!r}: W maps to shape {tuple(new.shape)}, tensor {source!r} "
                f"is {tuple(old.shape)}"
            )
        out[source] = new
    return out
