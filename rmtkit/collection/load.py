"""``rmtkit.load``: any model object or file -> weight collection, via the right adapter.

Dispatch never imports a framework the input does not need: objects are recognised by the
modules already imported (``sys.modules``) and their type's module name, files by extension.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from rmtkit.adapters import from_object
from rmtkit.collection.tree import validate_collection
from rmtkit.errors import MissingDataError, UnsupportedModelError

__all__ = ["load"]

_BY_SUFFIX = {
    ".onnx": "onnx",
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".ckpt": "torch",
    ".keras": "keras",
    ".npz": "jax",
    ".gguf": "gguf",
}


def _adapter(name: str):
    import importlib

    return importlib.import_module(f"rmtkit.adapters.{name}")


def _load_path(path: Path, kw: dict) -> xr.DataTree:
    where = str(path)
    try:
        found = path.exists()
    except (OSError, ValueError) as err:  # a name the OS cannot look up (too long, NUL byte)
        raise MissingDataError(f"{where[:200]}: no such file or folder ({err})") from err
    if not found:
        raise MissingDataError(f"{where}: no such file or folder")
    if path.is_dir():
        if any(path.glob("*.safetensors.index.json")) or any(path.glob("*.safetensors")):
            return _adapter("safetensors").load(path, **kw)
        onnx_files = sorted(path.glob("*.onnx"))
        if len(onnx_files) == 1:
            return _adapter("onnx").load(onnx_files[0], **kw)
        for name in ("pytorch_model.bin", "model.pt", "model.pth"):
            if (path / name).is_file():
                return _adapter("torch").load(path / name, **kw)
        raise UnsupportedModelError(
            f"{where}: folder holds no model rmtkit can read (*.safetensors, one *.onnx, "
            "pytorch_model.bin)"
        )
    name = path.name.lower()
    if name.endswith(".safetensors.index.json"):
        return _adapter("safetensors").load(path, **kw)
    adapter = _BY_SUFFIX.get(path.suffix.lower())
    if adapter is None:
        raise UnsupportedModelError(
            f"{where}: unknown model file extension {path.suffix or '(none)'!r}; rmtkit reads "
            f"{', '.join(sorted(_BY_SUFFIX))}, *.safetensors.index.json and folders of "
            "safetensors shards"
        )
    return _adapter(adapter).load(path, **kw)


def load(obj_or_path: Any, **kw: Any) -> xr.DataTree:
    """Read a model into a weight collection (an ``xarray.DataTree``, see DESIGN.md).

    Parameters
    ----------
    obj_or_path : model object or path
        - a path: ``.onnx``; ``.safetensors``, ``*.safetensors.index.json`` or a folder of
          shards; ``.pt``/``.pth``/``.bin``/``.ckpt`` (``torch.load(weights_only=True)``);
          ``.keras``; ``.npz``; ``.gguf`` (llama.cpp, quantized blocks dequantized per layer);
        - ``torch.nn.Module``, a state dict of torch tensors, ``keras.Model``/``Layer``,
          ``onnx.ModelProto``, a pytree (nested dicts/lists) of JAX/numpy arrays;
        - an ``xarray.DataTree`` collection, validated and returned as is.
    **kw
        Passed to the adapter (e.g. ``example_inputs=`` for torch modules, ``base_dir=`` for
        an in-memory ONNX model with external data).

    Raises
    ------
    UnsupportedModelError
        Unknown object type or file extension, or no analyzable layer.
    CorruptModelError, MissingDataError
        The file cannot be parsed, or a file it refers to is missing.
    """
    if isinstance(obj_or_path, xr.DataTree):
        return validate_collection(obj_or_path)
    if isinstance(obj_or_path, (str, os.PathLike)):
        return _load_path(Path(obj_or_path), kw)
    tree = from_object(obj_or_path, **kw)
    if tree is not None:
        return tree
    roots = {c.__module__.split(".")[0] for c in type(obj_or_path).__mro__}
    if isinstance(obj_or_path, (Mapping, list, tuple)) or "flax" in roots or "jax" in roots:
        return _adapter("jax").from_pytree(obj_or_path, **kw)
    raise UnsupportedModelError(
        f"rmtkit.load cannot read a {type(obj_or_path).__module__}.{type(obj_or_path).__name__}; "
        "pass a torch/keras/onnx model, a state dict, a pytree of arrays, a DataTree or a path"
    )
