"""xarray's tests for dask objects, made lazy: numpy-backed Datasets no longer import dask.

xarray asks two questions of the numpy arrays it wraps, and both import dask whenever it is
installed, on the first Dataset of a process, for users who never use dask:

- ``isinstance(data, dask.array.Array)`` in every ``Variable`` it builds from an array
  (``as_compatible_data``, through ``xarray.namedarray.pycompat.array_type("dask")``): imports
  ``dask.array``, ~0.55 s of CPU;
- ``is_dask_collection(data)`` in every computation (``xarray.namedarray.utils``): imports
  ``dask`` (~0.15 s) to call ``dask.base.is_dask_collection``.

(``python -X importtime``; the issue measured 0.74 s of a 1.9 s first ``rmtkit.analyze``.)
:func:`defer_dask` answers both without importing anything where the answer is known, and
exactly as xarray does otherwise:

- No object is an instance of ``dask.array.Array`` before ``dask.array`` is imported, so
  xarray's cache of duck-array modules gets an entry for dask whose ``type`` is ``()`` while
  ``dask.array`` is not in ``sys.modules`` and xarray's own entry (``(dask.array.Array,)``,
  which then replaces this one) as soon as it is; its other attributes (``module``,
  ``version``, ``available``) build xarray's own entry on the spot, importing dask as xarray
  would.
- ``dask.base.is_dask_collection(x)`` is False when ``x`` is a class or has no callable
  ``__dask_graph__`` (its first test); a numpy array has none. ``is_dask_collection`` is
  wrapped to answer that case itself and to call xarray's function for every other object.

Dask users see no difference (``tests/collection/test_xarray_compat.py`` checks both sides, and
the dask tests run after it in the same process). Where xarray's private names are not there
(another xarray version), nothing is changed: xarray then imports dask as before, only slower.
"""

import sys

__all__ = ["defer_dask"]


def _real_entry(pycompat):
    """xarray's own cache entry for dask (importing dask, as xarray does), stored in the cache."""
    entry = pycompat.DuckArrayModule("dask")
    pycompat._cached_duck_array_modules["dask"] = entry
    return entry


def _defer_array_type() -> bool:
    """The deferred ``array_type("dask")`` entry (module docstring); whether it is in place."""
    try:
        from xarray.namedarray import pycompat
    except ImportError:
        return False
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    base = getattr(pycompat, "DuckArrayModule", None)
    if not isinstance(cache, dict) or not isinstance(base, type):
        return False

    class DeferredDask(base):
        """xarray's ``DuckArrayModule("dask")``, built only once ``dask.array`` is imported."""

        _rmtkit_deferred = True

        def __init__(self) -> None:
            pass  # nothing imported here

        @property
        def type(self) -> tuple:
            array = sys.modules.get("dask.array")
            if array is None or not hasattr(array, "Array"):
                return ()  # no dask array can exist yet
            return _real_entry(pycompat).type

        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return getattr(_real_entry(pycompat), name)

    if "dask" not in cache:
        cache["dask"] = DeferredDask()
    return getattr(type(cache["dask"]), "_rmtkit_deferred", False)


def _defer_is_dask_collection() -> bool:
    """``is_dask_collection`` answers objects without ``__dask_graph__`` itself (module
    docstring); whether the wrapper is in place."""
    try:
        from xarray.namedarray import utils
    except ImportError:
        return False
    xarray_test = getattr(utils, "is_dask_collection", None)
    if not callable(xarray_test):
        return False
    if getattr(xarray_test, "_rmtkit_deferred", False):
        return True

    def is_dask_collection(x: object) -> bool:
        if isinstance(x, type) or not callable(getattr(x, "__dask_graph__", None)):
            return False  # dask.base.is_dask_collection's own first test
        return xarray_test(x)

    is_dask_collection.__doc__ = xarray_test.__doc__
    is_dask_collection._rmtkit_deferred = True
    utils.is_dask_collection = is_dask_collection
    return True


def defer_dask() -> tuple[bool, bool]:
    """Make xarray's two dask tests lazy (module docstring); idempotent.

    Returns whether each is in place: (``array_type("dask")``, ``is_dask_collection``).
    False means xarray had already built its own entry, or this xarray has no such name.
    """
    return _defer_array_type(), _defer_is_dask_collection()
