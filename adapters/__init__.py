"""Framework adapters, installed as ``rmtkit.adapters``.

Each submodule turns one framework's models into a labeled weight collection (an
``xarray.DataTree``, see :mod:`rmtkit.collection`) and imports its framework lazily: importing
``rmtkit.adapters`` itself imports no framework. They are the only code of rmtkit that knows a
framework.

Import rule: modules here import the standard library, numpy, xarray, their framework,
:mod:`rmtkit.collection` and :mod:`rmtkit.errors`; they compute no metric.

:func:`from_object`, :func:`write_back` and :func:`biases` dispatch a framework *object* to
its adapter (files are dispatched by :func:`rmtkit.load`); they ask only the frameworks already
imported.
"""

import importlib
import sys
from collections.abc import Mapping
from typing import Any

__all__ = [
    "biases",
    "from_object",
    "gguf",
    "jax",
    "keras",
    "onnx",
    "safetensors",
    "torch",
    "write_back",
]

#: adapters that read framework objects, in the order they are asked
_OBJECT_ADAPTERS = ("torch", "onnx", "keras")
_WRITERS = ("torch", "onnx")


def _roots(obj: Any) -> set[str]:
    """Top-level package names of ``type(obj)`` and its bases."""
    return {c.__module__.split(".")[0] for c in type(obj).__mro__}


def from_object(obj: Any, **kw: Any):
    """The collection of a framework object (a torch module or state dict, an ONNX
    ``ModelProto``, a Keras model) through its adapter's ``from_object``; None when no
    adapter of an imported framework knows it."""
    roots = _roots(obj)
    for name in _OBJECT_ADAPTERS:
        if name in sys.modules and (
            name in roots or (name == "torch" and isinstance(obj, Mapping))
        ):
            tree = importlib.import_module(f"{__name__}.{name}").from_object(obj, **kw)
            if tree is not None:
                return tree
    return None


def write_back(model: Any, collection) -> Any:
    """``model`` with the weights of ``collection``, in its own type (a copy of a torch module,
    a new state dict, an ONNX model or file), or None when no adapter writes that type."""
    roots = _roots(model)
    for name in _WRITERS:
        if name in sys.modules and (
            name in roots
            or isinstance(model, str)
            or (name == "torch" and isinstance(model, Mapping))
        ):
            out = importlib.import_module(f"{__name__}.{name}").write_back(model, collection)
            if out is not None:
                return out
    if isinstance(model, str) and model.lower().endswith(".onnx"):
        return importlib.import_module(f"{__name__}.onnx").write_back(model, collection)
    return None


#: adapters that read the biases of framework objects
_BIAS_READERS = ("torch",)


def biases(obj: Any):
    """The biases of a framework object's layers (a torch module or state dict), by the node
    path of each layer in its collection (layers without a bias are absent); None when no
    adapter reads that object's biases (a collection holds weights only)."""
    roots = _roots(obj)
    for name in _BIAS_READERS:
        if name in sys.modules and (
            name in roots or (name == "torch" and isinstance(obj, Mapping))
        ):
            out = importlib.import_module(f"{__name__}.{name}").biases(obj)
            if out is not None:
                return out
    return None


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
