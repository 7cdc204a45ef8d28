"""Keras 3 adapter: ``keras.Model`` / ``keras.Layer`` objects and ``.keras`` files.

Keras is imported with ``KERAS_BACKEND=jax`` unless a backend was chosen already (rmtkit never
needs TensorFlow). Layers are visited depth-first in the order Keras tracks them (the
topological order of a functional model, definition order otherwise); nested models and custom
layers are entered, a layer shared by several calls is one layer.

- ``Dense``: dense, ``kernel`` ``(in, out)`` transposed;
- ``EinsumDense``: dense; kernel axes that appear in the output are ``fan_out``, those
  contracted with the input ``fan_in`` (permuted and flattened);
- ``MultiHeadAttention``: its EinsumDense sublayers, ``<path>/query``, ``/key``, ``/value``
  ``(dim, heads, head_dim)`` -> ``(heads*head_dim, dim)`` and ``/attention_output``
  ``(heads, head_dim, dim)`` -> ``(dim, heads*head_dim)``;
- ``Conv1D`` / ``Conv2D``: ``(k..., in/groups, out)`` -> ``(out, in/groups, k...)``;
- ``Conv1DTranspose`` / ``Conv2DTranspose``: ``(k..., out, in)`` -> ``(out, in, k...)``;
- ``DepthwiseConv2D``: ``(kh, kw, in, mult)`` -> ``(in*mult, 1, kh, kw)``, ``groups=in``;
- ``SeparableConv1D`` / ``2D``: ``<path>/depthwise`` (as above) and ``<path>/pointwise``;
- ``Embedding``: ``embeddings`` ``(vocab, dim)`` as is.
"""

import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "jax")

from rmtkit.adapters._common import finish, is_file, require  # noqa: E402
from rmtkit.collection import LazyArray, sanitize_path, weight_node  # noqa: E402
from rmtkit.errors import CorruptModelError, MissingDataError, UnsupportedModelError  # noqa: E402

keras = require("keras", extra="keras", who="rmtkit.adapters.keras")

__all__ = ["from_keras", "from_object", "load"]


def _lazy(get) -> tuple[LazyArray, str]:
    """A LazyArray over ``get()`` (a variable or tensor, fetched again at read time)."""
    x = get()
    shape = tuple(int(s) for s in x.shape)
    dtype = str(getattr(x, "dtype", "float32"))
    dtype = dtype.rsplit(".", 1)[-1].removesuffix("'>")

    def load():
        v = get()
        v = getattr(v, "value", v)
        return np.asarray(keras.ops.convert_to_numpy(v))

    out = np.float64 if dtype == "float64" else np.float32
    return LazyArray(load, shape, out), dtype


def _einsum_layout(equation: str, kernel_shape) -> tuple[tuple[int, ...], tuple[int, int]]:
    """perm and 2-D shape mapping an EinsumDense kernel to ``(fan_out, fan_in)``."""
    lhs, out = equation.replace("...", "").replace(" ", "").split("->")
    inp, ker = lhs.split(",")
    out_axes = [i for i, c in enumerate(ker) if c in out]
    in_axes = [i for i, c in enumerate(ker) if c not in out and c in inp]
    rest = [i for i in range(len(ker)) if i not in out_axes and i not in in_axes]
    in_axes += rest  # letters in neither (summed out): count as inputs
    n_out = int(np.prod([kernel_shape[i] for i in out_axes], dtype=np.int64))
    n_in = int(np.prod([kernel_shape[i] for i in in_axes], dtype=np.int64))
    return tuple(out_axes + in_axes), (n_out, n_in)


def _sublayers(layer) -> list:
    return [
        s
        for s in layer._flatten_layers(include_self=False, recursive=False)
        if not isinstance(s, keras.layers.InputLayer)
    ]


def _layers_of(layer) -> list[tuple[str, str, Any, dict]]:
    """``(suffix, kind, getter, weight_node kwargs)`` of one layer (no recursion)."""
    L = keras.layers
    name = layer.name
    if isinstance(layer, L.EinsumDense):
        shape = tuple(layer.kernel.shape)
        perm, flat = _einsum_layout(layer.equation, shape)
        return [
            (
                "",
                "dense",
                lambda: layer.kernel,
                {"perm": perm, "shape": flat, "source": f"{name}/kernel"},
            )
        ]
    if isinstance(layer, L.Dense):
        return [("", "dense", lambda: layer.kernel, {"perm": (1, 0), "source": f"{name}/kernel"})]
    if isinstance(layer, L.Embedding):
        return [("", "embedding", lambda: layer.embeddings, {"source": f"{name}/embeddings"})]
    sep = getattr(L, "SeparableConv2D", ()), getattr(L, "SeparableConv1D", ())
    if isinstance(layer, sep):
        d = tuple(layer.depthwise_kernel.shape)
        n = len(d) - 2
        spatial = tuple(range(n))
        dw = {
            "perm": (n, n + 1) + spatial,
            "shape": (d[n] * d[n + 1], 1) + d[:n],
            "groups": d[n],
            "source": f"{name}/depthwise_kernel",
        }
        pw = {"perm": (n + 1, n) + spatial, "source": f"{name}/pointwise_kernel"}
        kind = "conv2d" if n == 2 else "conv1d"
        return [
            ("depthwise", kind, lambda: layer.depthwise_kernel, dw),
            ("pointwise", kind, lambda: layer.pointwise_kernel, pw),
        ]
    if isinstance(layer, L.DepthwiseConv2D):
        d = tuple(layer.kernel.shape)
        return [
            (
                "",
                "conv2d",
                lambda: layer.kernel,
                {
                    "perm": (2, 3, 0, 1),
                    "shape": (d[2] * d[3], 1, d[0], d[1]),
                    "groups": d[2],
                    "source": f"{name}/kernel",
                },
            )
        ]
    transposed = tuple(
        getattr(L, c) for c in ("Conv1DTranspose", "Conv2DTranspose") if hasattr(L, c)
    )
    if isinstance(layer, transposed):
        nd = len(layer.kernel.shape)
        if nd not in (3, 4):
            return []
        spatial = tuple(range(nd - 2))
        return [
            (
                "",
                "conv1d" if nd == 3 else "conv2d",
                lambda: layer.kernel,
                {"perm": (nd - 2, nd - 1) + spatial, "source": f"{name}/kernel"},
            )
        ]
    if isinstance(layer, (L.Conv1D, L.Conv2D)):
        nd = len(layer.kernel.shape)
        spatial = tuple(range(nd - 2))
        return [
            (
                "",
                "conv1d" if nd == 3 else "conv2d",
                lambda: layer.kernel,
                {
                    "perm": (nd - 1, nd - 2) + spatial,
                    "groups": int(getattr(layer, "groups", 1)),
                    "source": f"{name}/kernel",
                },
            )
        ]
    return []


def from_keras(model: Any) -> xr.DataTree:
    """Weight collection of a built Keras 3 model or layer (see the module docstring)."""
    if not isinstance(model, keras.Layer):
        raise UnsupportedModelError(
            f"from_keras takes a keras.Model or keras.Layer, got {type(model).__name__}"
        )
    if not model.built:
        raise UnsupportedModelError(
            f"keras model {model.name!r} is not built: call it on data or build() it first"
        )
    nodes: list = []
    seen: set[int] = set()

    def visit(layer, prefix: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found = _layers_of(layer)
        base = f"{prefix}/{sanitize_path(layer.name)}" if prefix else sanitize_path(layer.name)
        for suffix, kind, get, kw in found:
            lazy, dtype = _lazy(get)
            source = kw.pop("source")
            nodes.append(
                (
                    f"{base}/{suffix}" if suffix else base,
                    weight_node(
                        lazy,
                        kind=kind,
                        framework="keras",
                        op=type(layer).__name__,
                        layer_id=len(nodes),
                        dtype=dtype,
                        source=f"{prefix}/{source}" if prefix else source,
                        **kw,
                    ),
                )
            )
        if not found:
            for sub in _sublayers(layer):
                visit(sub, base)

    if _layers_of(model):
        visit(model, "")
    else:
        seen.add(id(model))
        for sub in _sublayers(model):
            visit(sub, "")
    return finish(nodes, f"keras model {model.name!r}")


def load(path: str | os.PathLike) -> xr.DataTree:
    """Weight collection of a ``.keras`` file (``keras.saving.load_model``, ``compile=False``)."""
    path = Path(path)
    where = str(path)
    if not is_file(path):
        raise MissingDataError(f"{where}: no such file")
    if not zipfile.is_zipfile(path):
        raise CorruptModelError(f"{where}: not a .keras archive (not a readable zip file)")
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as err:
        raise CorruptModelError(f"{where}: Keras could not load the model: {err}") from err
    return from_keras(model)


def from_object(obj: Any, **kw: Any) -> xr.DataTree | None:
    """The collection of a ``keras.Layer`` / ``keras.Model`` (:func:`from_keras`); None for
    anything else."""
    if isinstance(obj, keras.Layer):
        return from_keras(obj, **kw)
    return None
