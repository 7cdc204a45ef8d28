"""Framework adapters, installed as ``rmtkit.adapters``.

Each submodule turns one framework's models into a labeled weight collection
(an ``xarray.DataTree``, see DESIGN.md) and imports its framework lazily: importing
``rmtkit.adapters`` itself imports no framework.
"""

import importlib

__all__ = ["jax", "keras", "onnx", "safetensors", "torch"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
