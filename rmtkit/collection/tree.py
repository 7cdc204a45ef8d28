"""The collection's data model: nodes, lazy arrays, validation (see :mod:`rmtkit.collection`)."""

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from rmtkit.core.validate import is_real_dtype
from rmtkit.errors import InvalidWeightsError

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

#: Canonical dims of ``W`` for each layer kind.
DIMS: dict[str, tuple[str, ...]] = {
    "dense": ("fan_out", "fan_in"),
    "conv1d": ("fan_out", "fan_in", "k"),
    "conv2d": ("fan_out", "fan_in", "kh", "kw"),
    "embedding": ("vocab", "dim"),
}
#: The layer kinds a collection holds (the keys of :data:`DIMS`).
KINDS: tuple[str, ...] = tuple(DIMS)
_REQUIRED_ATTRS = ("kind", "layer_id", "source", "framework", "op", "dtype")
_KIND_BY_NDIM = {2: "dense", 3: "conv1d", 4: "conv2d"}
_NO_ID = 2**62  # sorts nodes without a layer_id last


def _dtype_name(dtype: Any) -> str:
    """A dtype's short name (``float32``, ``bfloat16``, ``int8``) from numpy, torch, ONNX, ..."""
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return str(dtype).removeprefix("torch.").removeprefix("<dtype: '").removesuffix("'>")


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype ``W`` gets: float32/float64 kept, every other dtype widened to float32."""
    dtype = np.dtype(dtype)
    if dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        return dtype
    return np.dtype(np.float32)


def canonicalize(
    array: Any,
    *,
    perm: tuple[int, ...] | None = None,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Turn a stored tensor into canonical layout: transpose by ``perm``, reshape to ``shape``.

    Pure numpy; the result is floating (see :func:`_float_dtype`). Used eagerly for in-memory
    tensors and inside the loaders of lazy ones, so both paths give the same array.
    """
    a = np.asarray(array)
    if a.dtype != _float_dtype(a.dtype):
        a = a.astype(np.float32)
    if perm is not None:
        a = np.transpose(a, perm)
    if shape is not None:
        a = np.reshape(a, shape)
    return a


class LazyArray(BackendArray):
    """A tensor read only when indexed: ``load()`` returns the full canonical array.

    ``shape`` and ``dtype`` are those of the canonical array. Wrapped in xarray's lazily
    indexed array by :func:`weight_node`; nothing is cached, so a collection never holds more
    than the tensor being read.
    """

    def __init__(
        self, load: Callable[[], np.ndarray], shape: tuple[int, ...], dtype: Any, name: str = ""
    ):
        self._load = load
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.name = name  # the source tensor, for error messages

    def map(
        self, fn: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], dtype: Any = None
    ) -> "LazyArray":
        """Compose a further transform, still lazily."""
        load = self._load
        return LazyArray(
            lambda: fn(load()), shape, self.dtype if dtype is None else dtype, self.name
        )

    def load(self) -> np.ndarray:
        """Read the full array (checking it has the promised shape)."""
        a = np.asarray(self._load())
        if a.shape != self.shape:
            raise InvalidWeightsError(
                f"tensor {self.name!r}: its loader produced shape {a.shape}, expected {self.shape}"
            )
        return a.astype(self.dtype, copy=False)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._raw_getitem
        )

    def _raw_getitem(self, key):
        return self.load()[key]


_UNSAFE = re.compile(r"[^0-9A-Za-z_\-/]+")


def sanitize_path(name: str, *, default: str = "layer") -> str:
    """Module or tensor name -> node path: ``.`` and ``::`` become ``/``, odd characters ``_``.

    >>> sanitize_path("encoder.layer.0.attention.query")
    'encoder/layer/0/attention/query'
    """
    path = name.replace("::", "/").replace(".", "/").replace(":", "_")
    path = _UNSAFE.sub("_", path)
    parts = [p for p in path.split("/") if p]
    parts = [p + "_" if p == "W" else p for p in parts]  # a child may not shadow the variable
    return "/".join(parts) or default


def _unique(path: str, taken: set[str]) -> str:
    """``path``, or ``path_1``, ``path_2``, ... when taken."""
    candidate, i = path, 0
    while candidate in taken:
        i += 1
        candidate = f"{path}_{i}"
    taken.add(candidate)
    return candidate


def weight_node(
    array: Any,
    *,
    kind: str | None = None,
    source: str = "",
    framework: str = "numpy",
    op: str = "",
    layer_id: int = 0,
    dtype: Any = None,
    perm: tuple[int, ...] | None = None,
    shape: tuple[int, ...] | None = None,
    groups: int | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """One layer node: a Dataset with the canonical ``W`` and the node attributes.

    Parameters
    ----------
    array : array-like or LazyArray
        The stored tensor, in the framework's layout (numpy, anything ``np.asarray`` takes, a
        :class:`LazyArray`, or a dask array already in canonical layout).
    kind : {"dense", "conv1d", "conv2d", "embedding"}, optional
        Default: from the canonical rank (2 -> dense, 3 -> conv1d, 4 -> conv2d).
    source, framework, op, layer_id
        Node attributes (see the module docstring).
    dtype : optional
        The source dtype recorded in ``attrs["dtype"]``. Default: ``array.dtype``.
    perm, shape : tuple of int, optional
        Canonicalization: transpose by ``perm`` then reshape to ``shape``
        (see :func:`canonicalize`); applied lazily to a :class:`LazyArray`.
    groups : int, optional
        Convolution groups, kept as an attribute.
    attrs : mapping, optional
        Extra attributes (``quant``: how the source was stored quantized, default ``""``).
    """
    src_dtype = _dtype_name(array.dtype if dtype is None else dtype)
    if isinstance(array, LazyArray):
        out_shape = array.shape
        if perm is not None:
            out_shape = tuple(out_shape[p] for p in perm)
        if shape is not None:
            out_shape = tuple(shape)
        data: Any = array
        if perm is not None or shape is not None:
            data = array.map(
                lambda a: canonicalize(a, perm=perm, shape=shape),
                out_shape,
                _float_dtype(array.dtype),
            )
        elif data.dtype != _float_dtype(data.dtype):
            data = array.map(lambda a: canonicalize(a), out_shape, _float_dtype(array.dtype))
        ndim = len(out_shape)
        data.name = data.name or str(source)
        wrapped = indexing.LazilyIndexedArray(data)
    elif type(array).__module__.startswith("dask"):
        if perm is not None:
            array = array.transpose(perm)
        if shape is not None:
            array = array.reshape(shape)
        if np.dtype(array.dtype) != _float_dtype(array.dtype):
            array = array.astype(np.float32)
        ndim, wrapped = array.ndim, array
    else:
        wrapped = canonicalize(array, perm=perm, shape=shape)
        ndim = wrapped.ndim
    if kind is None:
        kind = _KIND_BY_NDIM.get(ndim)
        if kind is None:
            raise InvalidWeightsError(
                f"tensor {source!r} has {ndim} dims after canonicalization; a layer needs 2 "
                "(dense), 3 (conv1d) or 4 (conv2d)"
            )
    if kind not in DIMS:
        raise InvalidWeightsError(f"tensor {source!r}: unknown kind {kind!r}; use one of {KINDS}")
    dims = DIMS[kind]
    if ndim != len(dims):
        raise InvalidWeightsError(
            f"tensor {source!r}: kind {kind!r} needs {len(dims)} dims {dims}, got {ndim}"
        )
    node_attrs: dict[str, Any] = {
        "kind": kind,
        "layer_id": int(layer_id),
        "source": str(source),
        "framework": str(framework),
        "op": str(op),
        "dtype": src_dtype,
        "quant": "",
    }
    if groups is not None and groups != 1:
        node_attrs["groups"] = int(groups)
    if attrs:
        node_attrs.update(attrs)
    return xr.Dataset({"W": xr.Variable(dims, wrapped)}, attrs=node_attrs)


def build_tree(nodes: list[tuple[str, xr.Dataset]]) -> xr.DataTree:
    """Assemble ``(path, node)`` pairs into a collection; paths are made unique in order."""
    taken: set[str] = set()
    mapping: dict[str, xr.Dataset] = {}
    for path, ds in nodes:
        mapping[_unique(path, taken)] = ds
    return xr.DataTree.from_dict(mapping)


def from_layers(
    layers: Mapping[str, Any], *, framework: str = "numpy", kinds: Mapping[str, str] | None = None
) -> xr.DataTree:
    """Build a collection from ``{name: array}`` with arrays already in canonical layout.

    Parameters
    ----------
    layers : mapping of str to array-like
        Layer name (``.`` or ``/`` separated) to weight array, in insertion = ``layer_id``
        order. A value may also be a pair ``(array, kind)``.
    framework : str, default: "numpy"
        Recorded in every node's ``framework`` attribute.
    kinds : mapping of str to str, optional
        Kind per name; default: from the rank (2 -> dense, 3 -> conv1d, 4 -> conv2d).

    Examples
    --------
    >>> tree = from_layers({"fc1": np.ones((4, 3)), "emb": (np.ones((10, 4)), "embedding")})
    >>> [(path, w.dims) for path, w in iter_layers(tree)]
    [('fc1', ('fan_out', 'fan_in')), ('emb', ('vocab', 'dim'))]
    """
    kinds = dict(kinds or {})
    nodes = []
    for i, (name, value) in enumerate(layers.items()):
        kind = kinds.get(name)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
            value, kind = value
        nodes.append(
            (
                sanitize_path(str(name)),
                weight_node(
                    value,
                    kind=kind,
                    source=str(name),
                    framework=framework,
                    op="array",
                    layer_id=i,
                ),
            )
        )
    return build_tree(nodes)


def validate_collection(tree: Any) -> xr.DataTree:
    """Check that ``tree`` is a valid weight collection and return it.

    A valid collection is an :class:`xarray.DataTree` with at least one layer node (a node
    holding a data variable ``W``); each layer's ``W`` has the canonical dims of its ``kind``
    (see :data:`DIMS`), a real dtype (any float, bfloat16 and float8 included, integer or bool:
    :func:`rmtkit.analyze` upcasts what is not float32/float64) and no empty axis; its attrs
    hold ``kind``, ``layer_id`` (an int, unique in the tree), ``source``, ``framework``, ``op``
    and ``dtype``.
    Values are not read (NaN/Inf are allowed through and flagged by the analysis).

    Raises
    ------
    InvalidWeightsError
        Naming the first offending node and what was wrong.
    """
    if not isinstance(tree, xr.DataTree):
        raise InvalidWeightsError(
            f"a weight collection must be an xarray.DataTree, got {type(tree).__name__}; "
            "build one with rmtkit.collection.from_layers"
        )
    seen: dict[int, str] = {}
    n = 0
    for node in tree.subtree:
        if "W" not in node.data_vars:
            continue
        n += 1
        path = node.path
        w = node["W"]
        missing = [a for a in _REQUIRED_ATTRS if a not in node.attrs]
        if missing:
            raise InvalidWeightsError(f"layer {path!r}: missing attrs {missing}")
        kind = node.attrs["kind"]
        if kind not in DIMS:
            raise InvalidWeightsError(f"layer {path!r}: kind {kind!r} is not one of {KINDS}")
        if tuple(w.dims) != DIMS[kind]:
            raise InvalidWeightsError(
                f"layer {path!r}: a {kind} W must have dims {DIMS[kind]}, got {tuple(w.dims)}"
            )
        if not is_real_dtype(w.dtype):
            raise InvalidWeightsError(
                f"layer {path!r}: W must hold real numbers (float, bfloat16, integer), got "
                f"{w.dtype}"
            )
        if 0 in w.shape:
            raise InvalidWeightsError(f"layer {path!r}: W has an empty axis, shape {w.shape}")
        lid = node.attrs["layer_id"]
        if isinstance(lid, bool) or not isinstance(lid, (int, np.integer)):
            raise InvalidWeightsError(f"layer {path!r}: layer_id must be an int, got {lid!r}")
        if int(lid) in seen:
            raise InvalidWeightsError(
                f"layer {path!r}: layer_id {lid} is also used by {seen[int(lid)]!r}"
            )
        seen[int(lid)] = path
    if n == 0:
        raise InvalidWeightsError("the collection has no layer (no node holds a variable 'W')")
    return tree


def layer_paths(tree: xr.DataTree) -> list[str]:
    """Paths (without the leading ``/``) of the layer nodes, in ``layer_id`` order."""
    return [path for path, _ in iter_layers(tree)]


def iter_layers(tree: xr.DataTree) -> Iterator[tuple[str, xr.DataArray]]:
    """Yield ``(path, W)`` for every layer node in ``layer_id`` order (``W`` still lazy).

    ``W`` carries the node's attrs, so ``W.attrs["kind"]`` etc. are at hand.
    """
    nodes = [node for node in tree.subtree if "W" in node.data_vars]
    nodes.sort(key=lambda node: int(node.attrs.get("layer_id", _NO_ID)))
    for node in nodes:
        w = node["W"].copy(deep=False)  # attrs of the copy only: the tree is left as is
        w.attrs = {**node.attrs, **w.attrs}
        yield node.path.lstrip("/"), w


def node_like(
    w: xr.DataArray, data: Any, *, layer_id: int | None = None, **attrs: Any
) -> xr.Dataset:
    """A layer node with the attrs of ``w`` (a DataArray from ``iter_layers``) and new data.

    ``data`` is an array or a :class:`LazyArray` in the canonical layout of ``w``'s kind.
    """
    old = dict(w.attrs)
    extra = {k: v for k, v in old.items() if k not in _REQUIRED_ATTRS and k != "groups"}
    extra.update(attrs)
    return weight_node(
        data,
        kind=old["kind"],
        source=old["source"],
        framework=old["framework"],
        op=old["op"],
        layer_id=int(old["layer_id"] if layer_id is None else layer_id),
        dtype=old["dtype"],
        groups=old.get("groups"),
        attrs=extra,
    )


def lazy_map(w: xr.DataArray, fn: Callable[[np.ndarray], np.ndarray]) -> LazyArray:
    """A :class:`LazyArray` of ``fn(w.values)`` with ``w``'s shape and dtype (read on demand)."""
    return LazyArray(lambda: fn(np.asarray(w.values)), w.shape, w.dtype)
