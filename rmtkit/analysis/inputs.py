"""What an analysis reads: a collection, a model, a ``base=`` delta or a LoRA adapter."""

from typing import Any

import xarray as xr

from rmtkit.collection.finetune import delta_collection, is_lora_adapter, lora_collection
from rmtkit.collection.load import load

__all__ = ["describe_input", "resolve"]


def resolve(weights: Any, *, base: Any = None, lora: str = "delta") -> xr.DataTree:
    """The weight collection to analyse: ``weights`` loaded (:func:`rmtkit.load`), as
    :math:`W - W_{\\rm base}` with ``base``, or the LoRA adapter folder's collection."""
    if is_lora_adapter(weights):
        return lora_collection(weights, base=base, mode=lora)
    tree = load(weights)
    if base is not None:
        base_tree = base if isinstance(base, xr.DataTree) else load(base)
        tree = delta_collection(tree, base_tree)
    return tree


def describe_input(obj: Any) -> str:
    """How a result's attrs name an input: a path as written, else the object's type."""
    if obj is None:
        return "None"
    if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        return str(obj)
    return type(obj).__name__
