r"""Compiled bucket kernels kept on disk between processes.

JAX's persistent compilation cache alone still leaves a fresh process tracing and lowering a
kernel (Python: ~0.3 s for the fit kernel) before it can look the executable up. The compiled
executable itself (``jax.experimental.serialize_executable``) loads in ~0.07 s, so
:func:`stored_kernel` keeps one file per kernel, option set and argument shapes under
``<compile cache>/``:data:`EXECUTABLES`.

Two XLA:CPU facts shape the store (jax 0.10): an executable that has run no longer serializes
("`LessThan` is not serializable"), and an executable that JAX loaded from its own persistent
cache serializes *without* some of its fused functions (the reloaded copy then fails with
"Function ... not found"). So the kernels compiled for the store carry a name unique to this
rmtkit source and jax version (JAX's cache, keyed by the module, cannot hand back a copy from
another version), are serialized before they first run, and are stored only after the
reloaded copy reproduced the original's outputs bit for bit on the arguments of that first
call (if JAX's cache served a reloaded copy anyway, it is compiled once more under a fresh
name). A stored kernel's first call in a process is checked too (a runtime error drops the
file and runs the jitted kernel). Anything else (a backend that cannot serialize, a read-only
folder, a stale or corrupt file) falls back to the jitted kernel: same computation, same
results, only slower to start.
"""

import contextlib
import functools
import os
import pickle
import threading
from collections.abc import Callable

import numpy as np

from rmtkit._engine.executor import enable_compilation_cache

__all__ = ["EXECUTABLES", "stored_kernel"]

#: sub-folder of the compilation cache holding rmtkit's compiled kernels (serialized)
EXECUTABLES = "rmtkit-executables"
#: suffix of the marker file of a kernel that cannot be stored on this machine
NO_STORE = ".nostore"
#: stored kernels of another rmtkit source / jax / machine unused this long are removed
STALE_SECONDS = 7 * 24 * 3600
#: characters of :func:`_fingerprint` leading a stored kernel's file name
FINGERPRINT_CHARS = 12
_LOADED: dict[str, Callable] = {}


def _cpu_model() -> str:
    """The CPU's model and instruction-set flags (a stored CPU executable is machine code)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features"))]
        return "".join(dict.fromkeys(lines))
    except OSError:
        return platform.processor()


@functools.cache
def _fingerprint() -> str:
    """What a stored executable is valid for: rmtkit's source, jax and jaxlib, the backend
    (platform, version, device kind) and the machine's CPU."""
    import hashlib
    import platform
    from pathlib import Path

    import jax
    import jaxlib

    device = jax.devices()[0]
    digest = hashlib.sha256()
    for part in (
        jax.__version__,
        jaxlib.__version__,
        device.platform,
        device.device_kind,
        device.client.platform_version,
        platform.machine(),
        _cpu_model(),
    ):
        digest.update(str(part).encode() + b"\0")
    package = Path(__file__).parents[1]  # the whole rmtkit package
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _deserialized(serialized: tuple):
    """The executable of ``(payload, in_tree, out_tree)``, or None if it does not load."""
    from jax.experimental.serialize_executable import deserialize_and_load

    try:
        return deserialize_and_load(*serialized)
    except Exception:  # noqa: BLE001 -- any failure means: compile it again
        return None


def _load_executable(path: str):
    """The compiled kernel stored at ``path``, or None (missing, unreadable or stale file)."""
    try:
        with open(path, "rb") as f:
            serialized = pickle.load(f)
    except Exception:  # noqa: BLE001 -- truncated, foreign or corrupt file
        return None
    return _deserialized(serialized)


def _serialized(compiled) -> tuple | None:
    """``serialize(compiled)``, or None when this executable cannot be serialized."""
    import jax
    from jax.experimental.serialize_executable import serialize

    try:
        return serialize(compiled)
    except (ValueError, NotImplementedError, jax.errors.JaxRuntimeError):
        return None


def _same_outputs(a, b) -> bool:
    """Whether two kernel outputs (pytrees of arrays) are identical, NaNs included."""
    import jax

    leaves_a, tree_a = jax.tree_util.tree_flatten(jax.device_get(a))
    leaves_b, tree_b = jax.tree_util.tree_flatten(jax.device_get(b))
    return tree_a == tree_b and all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.array_equal(x, y, equal_nan=np.asarray(x).dtype.kind in "fc")
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def _write(path: str, serialized: tuple | None) -> None:
    """Pickle ``serialized`` to ``path`` atomically (nothing when the folder is read-only)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(serialized, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass


def _round_trips(compiled, args: tuple) -> tuple | None:
    """``compiled`` serialized, if its reloaded copy gives the same outputs on ``args``; else
    None. Call before ``compiled`` first runs (a run executable no longer serializes)."""
    import jax

    serialized = _serialized(compiled)
    if serialized is None:
        return None
    reloaded = _deserialized(serialized)
    if reloaded is None:
        return None
    try:
        same = _same_outputs(reloaded(*args), compiled(*args))
    except jax.errors.JaxRuntimeError:  # e.g. "Function ... not found"
        return None
    return serialized if same else None


def _prune(folder: str, keep_prefix: str, now: float) -> None:
    """Remove the stored kernels (and markers) of other fingerprints, i.e. of another rmtkit
    source, jax or machine, not used for :data:`STALE_SECONDS` before ``now`` (the file
    system's time of the file just written: no clock is read). An older rmtkit sharing the
    folder keeps the files it still uses; a file in use elsewhere may vanish: it is then
    compiled again, never misread."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(keep_prefix) or not entry.name.endswith((".bin", NO_STORE)):
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > STALE_SECONDS:
                os.remove(entry.path)


def _compile_and_store(path: str, fn: Callable, module: str, args: tuple):
    """Compile ``fn`` for ``args`` and store it at ``path`` (module docstring); returns the
    executable to use.

    When the first compile does not round-trip (JAX's persistent cache served a reloaded
    copy: this kernel's file was lost while JAX's entry stayed), it is compiled once more
    under a fresh module name (a cache miss); if that fails too, ``<path>.nostore`` tells
    later processes to run the jitted kernel without trying again.
    """
    for attempt in (module, f"{module}_{os.getpid()}_{threading.get_ident()}"):
        compiled = _named_jit(fn, attempt).lower(*args).compile()
        serialized = _round_trips(compiled, args)
        if serialized is not None:
            _write(path, serialized)
            with contextlib.suppress(OSError):
                _prune(
                    os.path.dirname(path),
                    _fingerprint()[:FINGERPRINT_CHARS],
                    os.stat(path).st_mtime,
                )
            return compiled
    _write(path + NO_STORE, None)
    return compiled


class _FirstCallChecked:
    """A stored executable whose first call in this process is run to completion: if it fails
    at run time (JaxRuntimeError), the file is removed and ``fallback`` (the jitted kernel)
    answers instead, now and later."""

    def __init__(self, compiled, fallback: Callable, path: str):
        self.compiled, self.fallback, self.path, self.checked = compiled, fallback, path, False

    def __call__(self, *args):
        import jax

        if self.checked:
            return self.compiled(*args)
        try:
            out = jax.block_until_ready(self.compiled(*args))
        except jax.errors.JaxRuntimeError:
            with contextlib.suppress(OSError):
                os.remove(self.path)
            self.compiled = self.fallback
            out = self.fallback(*args)
        self.checked = True
        return out


def _named_jit(fn: Callable, name: str) -> Callable:
    """``jax.jit(fn)`` under the function name ``name`` (the name of the XLA module)."""
    import jax

    def kernel(*args):
        return fn(*args)

    kernel.__name__ = kernel.__qualname__ = name
    return jax.jit(kernel)


@functools.cache
def _jitted(fn: Callable, name: str) -> Callable:
    """The jitted kernel (the fallback), one per function and name."""
    return _named_jit(fn, name)


def stored_kernel(fn: Callable, name: str, *args) -> Callable:
    """The kernel ``fn`` (a pure JAX function, traced by ``jax.jit``) compiled for ``args``'
    shapes and dtypes, from disk when stored (module docstring).

    ``name`` identifies ``fn`` and its static options. The file is keyed by it, the shapes and
    dtypes, the x64 mode and :func:`_fingerprint` (rmtkit's source, jax/jaxlib, backend, CPU),
    and named after the fingerprint: files of other fingerprints unused for a week are removed
    when a kernel is stored (:func:`_prune`). Like JAX's own cache the files are trusted code:
    they live in the user's cache folder.
    Without a compile cache (:data:`rmtkit._engine.executor.CACHE_ENV` = ``0``) this is the
    jitted ``fn``.
    """
    import hashlib

    import jax

    module = f"rmtkit_kernel_{_fingerprint()[:16]}"
    folder = enable_compilation_cache()
    if folder is None:
        return _jitted(fn, module)
    shapes = ",".join(f"{np.dtype(a.dtype)}{tuple(np.shape(a))}" for a in args)
    key = hashlib.sha256(
        f"{_fingerprint()}|{name}|{shapes}|x64={jax.config.jax_enable_x64}".encode()
    ).hexdigest()
    compiled = _LOADED.get(key)
    if compiled is None:
        filename = f"{_fingerprint()[:FINGERPRINT_CHARS]}-{key[:32]}.bin"
        path = os.path.join(folder, EXECUTABLES, filename)
        compiled = _load_executable(path)
        if compiled is not None:
            with contextlib.suppress(OSError):
                os.utime(path)  # in use: not stale (_prune)
            compiled = _FirstCallChecked(compiled, _jitted(fn, module), path)
        elif os.path.exists(path + NO_STORE):
            compiled = _jitted(fn, module)
        else:
            compiled = _compile_and_store(path, fn, module, args)
        _LOADED[key] = compiled
    return compiled
