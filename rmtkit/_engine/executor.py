r"""Where the per-layer work of an analysis runs: local threads or a dask cluster.

Each layer's work (read ``W``, validate it, its eigenvalues, its randomization) is independent
and spends its time in LAPACK / numpy calls that release the GIL, so :func:`ordered_map` runs
layers on ``workers`` threads. At most ``workers + prefetch`` layers are in flight, so at most
that many weight matrices are in memory at once, and results come back in input order (the
output does not depend on scheduling: determinism).

With a ``dask.distributed`` client, :func:`dask_map` runs one task per layer on the cluster's
workers instead (:func:`dask_client` decides when): the weights are read where the task runs
(a dask-backed collection reads its files on the workers), and only the spectra come back.
"""

import collections
import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from rmtkit.errors import InvalidArgumentError

__all__ = [
    "CACHE_ENV",
    "CORES_PER_LARGE_LAYER",
    "EXECUTORS",
    "MEMORY_BUDGET",
    "compilation_cache_dir",
    "dask_client",
    "dask_map",
    "enable_compilation_cache",
    "layer_workers",
    "linalg_one_at_a_time",
    "loaded_openblas",
    "local_workers",
    "memory_budget",
    "ordered_map",
    "worker_count",
]

T = TypeVar("T")
R = TypeVar("R")

#: environment variable overriding the number of local worker threads
THREADS_ENV = "RMTKIT_THREADS"
#: environment variable for JAX's persistent compilation cache: a folder, or "0" (off)
CACHE_ENV = "RMTKIT_JAX_CACHE"
#: environment variable overriding :data:`MEMORY_BUDGET`
MEMORY_ENV = "RMTKIT_MEMORY"
#: named values of the ``executor`` option of the analyses (or a ``distributed.Client``)
EXECUTORS = ("auto", "threads", "dask")
#: least default bytes of the layers in flight together (one layer always runs, whatever its
#: size; :func:`memory_budget` allows two of the largest layers)
MEMORY_BUDGET = 512 << 20


_override = threading.local()


@contextlib.contextmanager
def local_workers(n: int):
    """Inside the block, this thread's analyses use ``n`` local worker threads (e.g. 1 in a
    task of a dask cluster, which provides the parallelism itself)."""
    before = getattr(_override, "workers", None)
    _override.workers = max(1, int(n))
    try:
        yield
    finally:
        _override.workers = before


def _set_count() -> int | None:
    """The worker count set explicitly: :func:`local_workers` inside its block, else
    ``$RMTKIT_THREADS`` (at least 1); None when neither is set."""
    forced = getattr(_override, "workers", None)
    if forced is not None:
        return forced
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "").strip()))
    except ValueError:  # unset, empty or not a number
        return None


def worker_count() -> int:
    """Local worker threads: :func:`local_workers` inside its block, ``$RMTKIT_THREADS`` if set
    (>= 1), else the usable CPU count."""
    forced = _set_count()
    if forced is not None:
        return forced
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


#: cores (BLAS threads) per worker for models with large layers (:func:`layer_workers`)
CORES_PER_LARGE_LAYER = 2


def layer_workers(layers: int, *, large: bool = False) -> int:
    """Worker threads for a map over ``layers`` layers: :func:`worker_count`, but no more
    than ``layers`` (an idle worker would only keep its core from BLAS: :func:`ordered_map`
    gives each worker ``cores // workers`` BLAS threads), and, with ``large`` layers and no
    count set explicitly, one worker per :data:`CORES_PER_LARGE_LAYER` cores. Measured on a
    7B-class block (``benchmarks/llm_sized.py``, 2 cores): one worker with two BLAS threads
    took 54 s against 63 s for two with one (memory-bound Gram products and eigensolver
    stages contend), at 1.2 GB peak instead of 1.8 GB."""
    workers = worker_count()
    if large and _set_count() is None:
        workers = max(1, workers // CORES_PER_LARGE_LAYER)
    return max(1, min(workers, int(layers)))


#: OpenBLAS entry points (plain and the scipy-openblas builds numpy and scipy ship), get / set
_OPENBLAS_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
)


def loaded_openblas() -> list[str] | None:
    """Paths of the OpenBLAS libraries loaded in this process, sorted, from ``/proc/self/maps``
    (one file read); None where that file does not exist (not Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            return sorted(
                {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()}
            )
    except OSError:
        return None


@functools.cache
def _openblas_controls() -> tuple | None:
    """(get, set) function pairs of every OpenBLAS loaded in this process
    (:func:`loaded_openblas`; ``threadpoolctl``'s general scan of every loaded library costs
    ~0.5 s with JAX and torch loaded). None where that is not possible (not Linux, no
    OpenBLAS: MKL, Accelerate), and :func:`blas_threads` uses ``threadpoolctl``."""
    import ctypes

    paths = loaded_openblas()
    if paths is None:
        return None
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _OPENBLAS_SYMBOLS:
            if hasattr(lib, get) and hasattr(lib, set_):
                controls.append((getattr(lib, get), getattr(lib, set_)))
                break
    return tuple(controls) or None


@contextlib.contextmanager
def blas_threads(limit: int):
    """Limit the BLAS libraries to ``limit`` threads inside the block (process-wide), then
    restore them: OpenBLAS directly (:func:`_openblas_controls`), else ``threadpoolctl``."""
    controls = _openblas_controls()
    if controls is None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=limit, user_api="blas"):
            yield
        return
    before = [get() for get, _ in controls]
    try:
        for _, set_ in controls:
            set_(int(limit))
        yield
    finally:
        for (_, set_), n in zip(controls, before, strict=True):
            set_(int(n))


def memory_budget(largest: int = 0) -> int:
    """Bytes the layers in flight may take together: ``$RMTKIT_MEMORY`` (bytes; suffixes
    K/M/G accepted), else the larger of :data:`MEMORY_BUDGET` and twice ``largest`` (the bytes
    the largest layer of the analysis needs while it runs).

    Twice the largest layer lets two of them run at once: on a model of large layers (an LLM's
    MLP matrices: 0.35 GB each, float32 + Gram) two cores stay busy where a fixed 512 MiB ran
    them one at a time (``benchmarks/llm_sized.py``: 1.9x per block), and the peak stays near
    the process + 2 x the largest layer, within 1.5 GB + 3 x the largest matrix.
    """
    env = os.environ.get(MEMORY_ENV, "").strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if env and env[-1] in scale:
            return max(1, int(float(env[:-1]) * scale[env[-1]]))
        if env:
            return max(1, int(float(env)))
    except ValueError:
        pass
    return max(MEMORY_BUDGET, 2 * int(largest))


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    prefetch: int = 1,
    cost: Callable[[T], int] | None = None,
    budget: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in order, ``workers + prefetch`` in flight.

    With one worker it is the plain serial ``map`` (no thread; BLAS keeps its own threads).
    With several, the BLAS libraries are limited to ``cores // workers`` threads each while
    the map runs (:func:`blas_threads`; process-wide). With ``cost`` (bytes an item needs while
    it runs), a new item starts only while the items in flight fit in ``budget`` bytes
    (default :func:`memory_budget`), and one always runs: peak memory ~ max(budget, largest
    item). An exception in ``fn`` is raised when its result is reached; the remaining
    submitted work is cancelled.
    """
    workers = worker_count() if workers is None else max(1, int(workers))
    if workers == 1:
        yield from map(fn, items)
        return
    budget = memory_budget() if budget is None else budget
    # one BLAS thread per worker: BLAS pools of several workers on the same cores oversubscribe
    # them (OpenBLAS threads spin while they wait), which is slower than either alone
    blas = max(1, worker_count() // workers)
    with (
        blas_threads(blas),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rmtkit") as pool,
    ):
        pending: collections.deque = collections.deque()  # (future, cost)
        try:
            for item in items:
                need = cost(item) if cost is not None else 0
                while pending and (
                    len(pending) >= workers + prefetch or sum(c for _, c in pending) + need > budget
                ):
                    yield pending.popleft()[0].result()
                pending.append((pool.submit(fn, item), need))
            while pending:
                yield pending.popleft()[0].result()
        finally:
            for fut, _ in pending:
                fut.cancel()


#: held while one of rmtkit's threads runs a JAX computation with a LAPACK call
#: (:func:`linalg_one_at_a_time`)
_LINALG_LOCK = threading.RLock()


def linalg_one_at_a_time(fn: Callable[..., R], *args, **kwargs) -> R:
    """``fn(*args, **kwargs)``, a JAX computation with LAPACK calls (``jnp.linalg.svd``,
    ``eigh``), computed to the end while no other thread of this process runs one.

    jaxlib's CPU LAPACK kernels split a batch of matrices over XLA's intra-op thread pool and
    wait, on a thread of that pool, for the parts (``ParallelBatchMap``). Two such computations
    dispatched at once from two threads (:func:`ordered_map`'s workers, threads of an
    in-process dask cluster) can hold every thread of the pool waiting, and neither ever
    finishes: seen on a 2-core machine as a hang in ``np.asarray`` of both results. One at a
    time, a computation's parts always find a free thread of the pool, and each still spreads
    its batch over every core. The NumPy (host) work of the layers keeps running in parallel.
    """
    import jax

    with _LINALG_LOCK:
        return jax.block_until_ready(fn(*args, **kwargs))


def compilation_cache_dir() -> str | None:
    """Folder of the persistent compilation cache rmtkit would use (None: switched off).

    ``$RMTKIT_JAX_CACHE`` (``0``/``off``/``false`` switches it off), else
    ``$XDG_CACHE_HOME/rmtkit/jax`` (default ``~/.cache/rmtkit/jax``).
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in ("0", "off", "false", "no"):
        return None
    if env:
        return os.path.expanduser(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rmtkit", "jax")


@functools.cache
def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache for rmtkit's kernels, once per process.

    The model-level kernels (one per bucket length and option set) take seconds to compile;
    cached on disk, a fresh process loads them in milliseconds. Nothing is changed when the
    user configured a cache already (``jax_compilation_cache_dir`` set) or switched it off
    (:data:`CACHE_ENV` = ``0``); otherwise the cache folder is :func:`compilation_cache_dir`
    and entries compiling in more than 0.5 s are kept. Returns the folder in use (or None).
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    folder = compilation_cache_dir()
    if folder is None:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # read-only home: run without the cache
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return folder


def _current_client():
    """The active ``distributed`` client, or None (also when distributed is not installed)."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # no client
        return None


def dask_client(executor=None, *, dask_backed: bool = False):
    """The ``distributed.Client`` an analysis runs on, or None for local threads.

    ``executor``: ``None``/``"auto"`` -- the active client (``distributed.get_client()``) if
    there is one *and* the weights are dask-backed (``dask_backed``), else local threads;
    ``"threads"`` -- local threads; ``"dask"`` -- the active client (an error if none); a
    ``distributed.Client`` -- that client (e.g. ``Client("tcp://scheduler:8786")`` of an
    existing cluster).
    """
    if executor is None or (isinstance(executor, str) and executor == "auto"):
        return _current_client() if dask_backed else None
    if isinstance(executor, str):
        if executor == "threads":
            return None
        if executor == "dask":
            client = _current_client()
            if client is None:
                raise InvalidArgumentError(
                    "executor='dask' needs an active dask.distributed client: create one first "
                    "(`from distributed import Client; client = Client()` for a local cluster, "
                    "or `Client('tcp://scheduler:8786')` for an existing one), or pass it as "
                    "`executor=client`."
                )
            return client
        raise InvalidArgumentError(
            f"unknown executor {executor!r}: use one of {EXECUTORS} or a distributed.Client."
        )
    if hasattr(executor, "submit") and hasattr(executor, "compute"):
        return executor
    raise InvalidArgumentError(
        f"executor must be one of {EXECUTORS} or a distributed.Client, got "
        f"{type(executor).__name__}."
    )


def dask_map(client, fn: Callable[..., R], calls: list[tuple]) -> Iterator[R]:
    """``fn(*args)`` for each ``args`` in ``calls`` as tasks on ``client``'s workers, in order.

    Dask collections among the arguments are computed on the workers as dependencies of the
    task (``dask.delayed``), so a dask-backed weight is read where its task runs.
    """
    import dask

    tasks = [dask.delayed(fn, pure=False)(*args) for args in calls]
    futures = client.compute(tasks)
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.release()
