"""The labeled weight collection: one ``xarray.DataTree`` node per analyzable layer.

Import rule: this folder imports the standard library, numpy, xarray, :mod:`rmtkit.errors` and
:mod:`rmtkit.core.validate`, and loads the adapters (:mod:`rmtkit.adapters`) only by name, at
call time, in :mod:`rmtkit.collection.load`; the adapters build on :mod:`rmtkit.collection.tree`.
It computes no metric.

- :mod:`rmtkit.collection.tree` — the data model (below), nodes, lazy arrays, validation;
- :mod:`rmtkit.collection.load` — ``rmtkit.load``: any model object or file, via its adapter;
- :mod:`rmtkit.collection.finetune` — ``base=`` deltas and LoRA adapters as collections;
- :mod:`rmtkit.collection.data` — the files shipped with rmtkit (the embedded model);
- :mod:`rmtkit.collection.xarray_compat` — xarray's dask tests made lazy (no ``dask`` import
  for the Datasets of a process that does not use dask).

The labeled weight collection: one ``xarray.DataTree`` node per analyzable layer.

A *collection* is an :class:`xarray.DataTree`. Every node that holds a data variable ``W`` is a
layer; its path is the model's module path with ``/`` separators
(``encoder/layer/0/attention/query``). ``W`` has canonical dims, whatever the framework stored:

==============  ==========================================  ==========================
``kind``        dims of ``W``                               e.g.
==============  ==========================================  ==========================
``dense``       ``("fan_out", "fan_in")``                   torch ``Linear.weight``
``conv1d``      ``("fan_out", "fan_in", "k")``              torch ``Conv1d.weight``
``conv2d``      ``("fan_out", "fan_in", "kh", "kw")``       torch ``Conv2d.weight``
``embedding``   ``("vocab", "dim")``                        torch ``Embedding.weight``
==============  ==========================================  ==========================

Node attributes: ``kind``; ``layer_id`` (int, execution / topological order, unique);
``source`` (the original tensor name); ``framework``; ``op`` (the framework's layer or operator
type); ``dtype`` (the source dtype, as a string); ``quant`` (how the source is stored quantized:
``""`` for float weights, ``"int8 per-channel"``, ``"int4 block 32"``, ``"Q4_K"``, ``"GPTQ int4
group 128"`` ...: docs/math.md §10); optionally ``groups`` (grouped convolutions) and
``source_slice`` (``"start:stop"`` rows of ``source`` when one stored tensor holds several layers,
e.g. the packed q/k/v projection of ``torch.nn.MultiheadAttention``).

``W`` is floating (float16/bfloat16 sources are widened to float32; quantized sources are
dequantized) and may be *lazy*: adapters wrap memory-mapped or external tensors in a lazily
indexed backend array, so reading a collection keeps one tensor in memory at a time
(``node["W"].values`` reads it; nothing is cached on the tree). Dask-backed ``W`` work too.

Build a collection by hand with :func:`from_layers` (arrays already in canonical layout) or
:func:`weight_node`, and check one with :func:`validate_collection`.
"""

from rmtkit.collection.tree import (
    DIMS,
    KINDS,
    LazyArray,
    build_tree,
    canonicalize,
    from_layers,
    iter_layers,
    layer_paths,
    lazy_map,
    node_like,
    sanitize_path,
    validate_collection,
    weight_node,
)
from rmtkit.collection.xarray_compat import defer_dask

defer_dask()

__all__ = [
    "DIMS",
    "KINDS",
    "LazyArray",
    "build_tree",
    "canonicalize",
    "from_layers",
    "iter_layers",
    "layer_paths",
    "lazy_map",
    "node_like",
    "sanitize_path",
    "validate_collection",
    "weight_node",
]
