"""The layer selection language of the ``layers=`` option.

``layers`` is None (all), an int / str / list of them, or a dict ``{"include": [...],
"exclude": [...]}`` of layer ids, kinds and name patterns (:func:`select_layers`). Only node
attributes are read, never ``W``.
"""

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from rmtkit.collection.tree import KINDS, iter_layers, sanitize_path
from rmtkit.errors import InvalidArgumentError

__all__ = ["Filter", "matches", "parse_layers", "select", "select_layers"]


@dataclass
class Filter:
    """A parsed ``layers=`` filter: ids, kinds and name patterns to include and exclude."""

    include_ids: set = field(default_factory=set)
    include_kinds: set = field(default_factory=set)
    include_patterns: list = field(default_factory=list)
    exclude_ids: set = field(default_factory=set)
    exclude_kinds: set = field(default_factory=set)
    exclude_patterns: list = field(default_factory=list)

    @property
    def has_include(self) -> bool:
        return bool(self.include_ids or self.include_kinds or self.include_patterns)


def _filter_items(value, what: str) -> list:
    """The entries of one part of ``layers=`` as a list."""
    if isinstance(value, (str, int, np.integer)):
        return [value]
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()
    if isinstance(value, Iterable) and not isinstance(
        value, (Mapping, bytes, bytearray, np.ndarray)
    ):
        return list(value)
    raise InvalidArgumentError(
        f"`layers` {what} must be an int, a str or a list of them; got {value!r}."
    )


def parse_layers(layers) -> Filter:
    """Normalise the ``layers=`` argument (see :func:`select_layers`)."""
    filt = Filter()
    if layers is None:
        return filt
    if isinstance(layers, Mapping):
        unknown = set(layers) - {"include", "exclude"}
        if unknown:
            raise InvalidArgumentError(
                f"`layers` as a dict takes the keys 'include' and 'exclude'; got {sorted(unknown)}."
            )
        groups = [(item, False) for item in _filter_items(layers.get("include", []), "include")]
        groups += [(item, True) for item in _filter_items(layers.get("exclude", []), "exclude")]
    else:
        groups = []
        for item in _filter_items(layers, "list"):
            if isinstance(item, str) and item.startswith("!"):
                groups.append((item[1:], True))
            elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and item < 0:
                groups.append((-int(item), True))  # WeightWatcher: negative ids exclude
            else:
                groups.append((item, False))
    for item, exclude in groups:
        if isinstance(item, bool) or not isinstance(item, (str, int, np.integer)):
            raise InvalidArgumentError(
                f"`layers` entries must be layer ids (int), kinds ({', '.join(KINDS)}) or name "
                f"patterns (str); got {item!r}."
            )
        if isinstance(item, str) and not item:
            raise InvalidArgumentError("`layers` entries must not be empty strings.")
        if isinstance(item, (int, np.integer)):
            if item < 0:
                raise InvalidArgumentError(
                    f"`layers` id {item} is negative inside an include/exclude list."
                )
            (filt.exclude_ids if exclude else filt.include_ids).add(int(item))
        elif item in KINDS:
            (filt.exclude_kinds if exclude else filt.include_kinds).add(item)
        else:
            (filt.exclude_patterns if exclude else filt.include_patterns).append(item)
    return filt


_GLOB = set("*?[")


def _name_matches(pattern: str, path: str, source: str) -> bool:
    """Glob patterns match the node path, its dotted form or the source tensor name; plain names
    match the path exactly or as a prefix (``encoder`` selects ``encoder/...``)."""
    names = (path, path.replace("/", "."), source)
    if _GLOB & set(pattern):
        return any(fnmatch.fnmatchcase(n, pattern) for n in names)
    target = sanitize_path(pattern)
    return path == target or path.startswith(target + "/") or source == pattern


def matches(filt: Filter, path: str, attrs: Mapping) -> bool:
    """Whether the layer at ``path`` with node ``attrs`` passes ``filt``."""
    lid, kind, source = (
        int(attrs.get("layer_id", -1)),
        attrs.get("kind"),
        str(attrs.get("source", "")),
    )
    if filt.has_include and not (
        lid in filt.include_ids
        or kind in filt.include_kinds
        or any(_name_matches(p, path, source) for p in filt.include_patterns)
    ):
        return False
    return not (
        lid in filt.exclude_ids
        or kind in filt.exclude_kinds
        or any(_name_matches(p, path, source) for p in filt.exclude_patterns)
    )


def select_layers(tree: xr.DataTree, layers=None) -> list[tuple[str, xr.DataArray]]:
    """``(path, W)`` of the layers of ``tree`` chosen by ``layers``, in ``layer_id`` order.

    ``layers`` is None (all), or an int / str / list of them, or a dict
    ``{"include": [...], "exclude": [...]}``:

    * an int >= 0 is a ``layer_id``; a negative int ``-k`` excludes id ``k`` (WeightWatcher);
    * a str equal to a kind (``"dense"``, ``"conv1d"``, ``"conv2d"``, ``"embedding"``) selects
      that kind;
    * another str is a name pattern: with ``*?[`` a glob (``fnmatch``) against the node path
      (``encoder/layer/0/query``), its dotted form or the source tensor name; otherwise an exact
      path (``.`` or ``/`` separated) or a path prefix; a leading ``!`` excludes.

    A layer is kept when it matches any include item (or there is none) and no exclude item.
    Only node attributes are read, never ``W``.

    Raises
    ------
    InvalidArgumentError
        A malformed filter, or one that selects no layer (the message lists the layers).
    """
    filt = parse_layers(layers)
    return select(tree, filt, layers)


def select(tree, filt: Filter, layers) -> list[tuple[str, xr.DataArray]]:
    """``(path, W)`` of the layers of ``tree`` that ``filt`` (parsed from ``layers``) keeps."""
    chosen, everything = [], []
    for path, w in iter_layers(tree):
        everything.append(path)
        if matches(filt, path, w.attrs):
            chosen.append((path, w))
    if not chosen:
        shown = ", ".join(everything[:10]) + (", ..." if len(everything) > 10 else "")
        raise InvalidArgumentError(f"`layers`={layers!r} selects no layer; the layers are: {shown}")
    return chosen
