"""The analysis's execution layer: threads, memory budget, compilation cache, host spectra."""

import json
import os
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
import scipy.linalg

import rmtkit
from rmtkit._engine import executor as _exec
from rmtkit._engine import host as _host
from rmtkit._engine import spectra as _spectra
from rmtkit._engine import stored as _stored
from rmtkit.analysis import analyze


def test_ordered_map_keeps_input_order_whatever_finishes_first():
    def slow_first(i):
        time.sleep(0.02 * (5 - i))
        return i * i

    assert list(_exec.ordered_map(slow_first, range(6), workers=3)) == [i * i for i in range(6)]
    assert list(_exec.ordered_map(slow_first, range(6), workers=1)) == [i * i for i in range(6)]


def test_ordered_map_respects_the_memory_budget_but_always_runs_one():
    lock, state = threading.Lock(), {"now": 0, "peak": 0}
    costs = [40, 40, 40, 200, 10, 10, 10]

    def work(c):
        with lock:
            state["now"] += c
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.01)
        with lock:
            state["now"] -= c
        return c

    out = list(_exec.ordered_map(work, costs, workers=4, cost=lambda c: c, budget=100))
    assert out == costs
    assert state["peak"] == 200  # the 200-byte item ran alone; never two 40s + another 40
    state["peak"] = 0
    list(_exec.ordered_map(work, [40] * 8, workers=4, cost=lambda c: c, budget=100))
    assert state["peak"] <= 80


def test_ordered_map_raises_the_first_error_in_order():
    def boom(i):
        if i == 2:
            raise KeyError("layer 2")
        return i

    it = _exec.ordered_map(boom, range(5), workers=2)
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(KeyError, match="layer 2"):
        next(it)


#: many threads at once, each running batched complex SVDs through linalg_one_at_a_time
_LINALG_THREADS = """
import os, threading
import jax, jax.numpy as jnp, numpy as np
from rmtkit._engine.executor import linalg_one_at_a_time
jax.config.update("jax_enable_x64", True)
svd = jax.jit(lambda a: jnp.linalg.svd(a, compute_uv=False))
a = np.random.default_rng(0).standard_normal((128, 32, 32)) * (1 + 1j)
want = np.asarray(svd(a))
out = []
def work():
    out.extend(np.array_equal(np.asarray(linalg_one_at_a_time(svd, a)), want) for _ in range(50))
threads = [threading.Thread(target=work) for _ in range(2 * os.cpu_count())]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(out), all(out))
"""


@pytest.mark.slow
def test_linalg_from_many_threads_at_once_finishes():
    """jaxlib's batched LAPACK kernels wait for their parts on XLA's CPU thread pool: the same
    program calling the SVD from its threads directly hung in 3 of 4 runs on 2 cores (and the
    suite once did, analysing convolutions with ``conv2d_fft`` on two worker threads);
    through :func:`linalg_one_at_a_time` every call finishes with the same values."""
    done = subprocess.run(
        [sys.executable, "-c", _LINALG_THREADS], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(50 * 2 * os.cpu_count()), "True"]


@pytest.mark.parametrize(("env", "expected"), [("3", 3), ("0", 1), ("junk", None)])
def test_worker_count_reads_the_environment(monkeypatch, env, expected):
    monkeypatch.setenv(_exec.THREADS_ENV, env)
    assert _exec.worker_count() == (expected or len(os.sched_getaffinity(0)))


def test_layer_workers(monkeypatch):
    # at most one worker per layer; large layers: one worker per two cores, unless the count
    # is set explicitly (then it is the user's, capped by the layers only)
    monkeypatch.delenv(_exec.THREADS_ENV, raising=False)
    monkeypatch.setattr(_exec, "worker_count", lambda: 8)
    assert _exec.layer_workers(100) == 8
    assert _exec.layer_workers(3) == 3
    assert _exec.layer_workers(1, large=True) == 1
    assert _exec.layer_workers(100, large=True) == 8 // _exec.CORES_PER_LARGE_LAYER
    monkeypatch.setattr(_exec, "worker_count", lambda: 1)
    assert _exec.layer_workers(100, large=True) == 1
    monkeypatch.setattr(_exec, "worker_count", lambda: 8)
    with _exec.local_workers(8):
        assert _exec.layer_workers(100, large=True) == 8
    monkeypatch.setenv(_exec.THREADS_ENV, "6")
    assert _exec.layer_workers(100, large=True) == 8  # set: not halved (count patched to 8)
    assert _exec.layer_workers(2, large=True) == 2


@pytest.mark.parametrize(
    ("env", "expected"),
    [("2G", 2 << 30), ("512M", 512 << 20), ("1000", 1000), ("", _exec.MEMORY_BUDGET)],
)
def test_memory_budget_reads_the_environment(monkeypatch, env, expected):
    monkeypatch.setenv(_exec.MEMORY_ENV, env)
    assert _exec.memory_budget() == expected


def test_compilation_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(_exec.CACHE_ENV, "off")
    assert _exec.compilation_cache_dir() is None
    monkeypatch.setenv(_exec.CACHE_ENV, str(tmp_path / "c"))
    assert _exec.compilation_cache_dir() == str(tmp_path / "c")
    monkeypatch.delenv(_exec.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _exec.compilation_cache_dir() == str(tmp_path / "rmtkit" / "jax")


@pytest.mark.slow
def test_a_fresh_process_loads_the_kernels_from_the_persistent_cache(tmp_path):
    """Second process: the fit kernels come from disk (no XLA compile of them)."""
    code = (
        "import logging, io, numpy as np, rmtkit\n"
        "from jax._src import compilation_cache as cc\n"
        "w = np.random.default_rng(0).standard_t(3, (300, 120))\n"
        "rmtkit.analyze(rmtkit.from_layers({'a': w}), progress=False)\n"
        "import jax; print('DIR', jax.config.jax_compilation_cache_dir)\n"
    )
    env = dict(os.environ, RMTKIT_JAX_CACHE=str(tmp_path / "cache"))
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        ).stdout
    assert f"DIR {tmp_path / 'cache'}" in out
    entries = list((tmp_path / "cache").iterdir())
    assert entries, "no kernel was written to the persistent cache"


@pytest.mark.parametrize("shape", [(3000, 70), (70, 3000), (400, 400)])
def test_gram64_in_blocks_equals_the_float64_product(monkeypatch, shape):
    monkeypatch.setattr(_host, "BLOCK_ELEMENTS", 5000)  # many blocks
    a = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    a = a if shape[0] >= shape[1] else a.T
    ref = a.astype(np.float64).T @ a.astype(np.float64)
    got = _host.gram64(a)
    np.testing.assert_allclose(np.triu(got), np.triu(ref), rtol=1e-12, atol=1e-12 * ref.max())


def test_rank_deficient_slices_fall_back_to_svd_values():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((300, 20)) @ rng.standard_normal((20, 100))  # rank 20
    evals = _host.host_esd(w)
    s = scipy.linalg.svd(w, compute_uv=False)
    np.testing.assert_allclose(evals, np.sort(s * s), rtol=1e-9, atol=1e-12 * evals.max())
    assert np.sum(np.sqrt(evals) > evals.max() ** 0.5 * 300 * np.finfo(float).eps) == 20


def test_host_randomize_permutes_each_slice_within_itself():
    w = np.arange(2 * 3 * 3 * 3, dtype=np.float64).reshape(2, 3, 3, 3)
    r = _host.host_randomize(w, _host.key_rng(jax.random.key(0)))
    assert r.shape == w.shape and not np.array_equal(r, w)
    for i in range(3):
        for j in range(3):
            assert sorted(r[:, :, i, j].ravel()) == sorted(w[:, :, i, j].ravel())


def test_randomized_spectra_depend_on_the_key_alone():
    w = np.random.default_rng(3).standard_t(2.5, (200, 120))
    a1, top1 = _spectra.randomized_spectra(w, jax.random.key(7))
    a2, top2 = _spectra.randomized_spectra(w, jax.random.key(7))
    b, _ = _spectra.randomized_spectra(w, jax.random.key(8))
    assert np.array_equal(a1, a2) and top1 == top2 == a1[-1]
    assert not np.array_equal(a1, b)
    assert np.isclose(a1.sum(), np.sum(w * w))  # permuting keeps the Frobenius norm
    small, top = _spectra.randomized_spectra(w[:50, :40], jax.random.key(7))  # < 100 evals
    assert top >= small[-1]  # five replicas


def test_threads_and_serial_give_bit_identical_details(monkeypatch):
    rng = np.random.default_rng(4)
    tree = rmtkit.from_layers({f"l{i}": rng.standard_t(3, (150 + 10 * i, 120)) for i in range(5)})
    runs = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv(_exec.THREADS_ENV, threads)
        runs.append(analyze(tree, randomize=True, key=3, progress=False))
    assert runs[0].identical(runs[1]) and runs[0].identical(runs[2])


def test_stored_kernels_give_the_jitted_kernels_results_and_are_stored():
    from rmtkit._engine import kernels

    evals = np.sort(np.random.default_rng(6).pareto(2.0, (16, 256)) + 1.0, axis=1)
    mask = np.ones_like(evals, bool)
    mask[3, 200:] = False
    n_rows = np.full(16, 300.0)
    opts = kernels.KernelOptions()
    with jax.enable_x64(True):
        ref = jax.device_get(jax.jit(kernels._kernel_fn("fit", opts))(evals, mask, n_rows))
        got = jax.device_get(kernels._call_kernel("fit", opts, evals, mask, n_rows))
    assert set(got) == set(ref)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    folder = _exec.enable_compilation_cache()
    if folder is not None:  # the compiled kernel is on disk for the next process
        stored = os.path.join(folder, _stored.EXECUTABLES)
        assert any(p.endswith(".bin") for p in os.listdir(stored))


_STORE_SCRIPT = """
import json, sys
import jax, numpy as np
from rmtkit._engine import kernels
from rmtkit._engine import stored as _stored
calls = []
compile_and_store = _stored._compile_and_store
_stored._compile_and_store = lambda *a: calls.append(1) or compile_and_store(*a)
evals = np.sort(np.random.default_rng(8).pareto(2.0, (16, 128)) + 1.0, axis=1)
mask, n_rows, opts = np.ones_like(evals, bool), np.full(16, 200.0), kernels.KernelOptions()
with jax.enable_x64(True):
    got = jax.device_get(kernels._call_kernel("fit", opts, evals, mask, n_rows))
    ref = jax.device_get(jax.jit(kernels._kernel_fn("fit", opts))(evals, mask, n_rows))
same = all(np.array_equal(got[k], ref[k], equal_nan=True) for k in ref)
print(json.dumps({"compiled": len(calls), "same": same}))
"""


@pytest.mark.slow
def test_stored_kernels_are_loaded_by_the_next_process_and_a_corrupt_one_is_replaced(tmp_path):
    """Fresh processes sharing a cache folder: the first compiles and stores the kernel, the
    next loads it; a corrupt file is compiled again (JAX's own cache holds a copy that does not
    serialize whole: the retry under a fresh name) and rewritten; the results never change."""
    env = dict(os.environ, RMTKIT_JAX_CACHE=str(tmp_path))

    def run() -> dict:
        out = subprocess.run(
            [sys.executable, "-c", _STORE_SCRIPT],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    assert run() == {"compiled": 1, "same": True}
    (stored,) = (tmp_path / _stored.EXECUTABLES).iterdir()
    assert run() == {"compiled": 0, "same": True}
    stored.write_bytes(b"not an executable")
    assert run() == {"compiled": 1, "same": True}
    assert stored.stat().st_size > 1000 and not list(tmp_path.rglob("*" + _stored.NO_STORE))
    assert run() == {"compiled": 0, "same": True}


def test_prune_removes_only_stale_kernels_of_other_fingerprints(tmp_path):
    now = 2_000_000_000.0
    old = now - _stored.STALE_SECONDS - 60
    names = {
        "mine-old.bin": old,
        "other-old.bin": old,
        "other-new.bin": now - 60,
        "other-old.bin" + _stored.NO_STORE: old,
        "other-old.txt": old,
    }
    for name, mtime in names.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (mtime, mtime))
    _stored._prune(str(tmp_path), "mine", now)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mine-old.bin",
        "other-new.bin",
        "other-old.txt",
    ]
