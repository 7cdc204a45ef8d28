"""Long runs: analysing the same model 100 times in one process leaks no memory and compiles
no new kernel after the first run.

The model is a small ONNX file (read again on every run, so the adapter is exercised too),
analysed with every per-layer extra (randomization, MP fit, detX), so every kernel family runs.
Memory is the resident set size (``/proc/self/statm``) after ``gc.collect()`` and glibc's
``malloc_trim(0)`` (which hands freed arenas back, so allocator caching does not pass for a
leak); compilations are counted with ``jax.monitoring`` events (tracing a function to a jaxpr
and compiling it for the backend).
"""

import ctypes
import gc
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import require

from rmtkit.analysis import analyze

RUNS = 100
#: RSS growth allowed between run 10 and run 100 (a leak of one 100x64 float32 W per run
#: would be 2.3 MB; of one Dataset per run, ~1.5 MB)
RSS_SLACK_MB = 20.0
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/backend_compile_duration",
)


def _rss_mb() -> float:
    """Resident set size in MB after a collection and (glibc) trimming the malloc heap."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


def _small_onnx(path: Path) -> Path:
    require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((r.standard_t(3, size=s) * 0.1).astype(np.float32), n)
        for n, s in (
            ("fc1.weight", (100, 64)),
            ("fc2.weight", (64, 80)),
            ("conv.weight", (16, 8, 3, 3)),
        )
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight"], ["h"], transB=1),
        helper.make_node("MatMul", ["h", "fc2.weight"], ["y"]),
        helper.make_node("Conv", ["img", "conv.weight"], ["c"]),
    ]
    graph = helper.make_graph(
        nodes,
        "long",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 8, 5, 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_hundred_runs_no_leak_no_recompilation(tmp_path):
    path = _small_onnx(tmp_path / "model.onnx")
    kw = dict(randomize=True, mp_fit=True, detx=True, key=1, progress=False)
    compiles: list[str] = []
    recording = [False]

    def listener(event, duration, **_):
        if recording[0] and event in COMPILE_EVENTS:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        first = analyze(path, **kw)  # compiles what this model needs
        recording[0] = True
        rss = {}
        for run in range(2, RUNS + 1):
            d = analyze(path, **kw)
            if run in (10, RUNS):
                rss[run] = _rss_mb()
            if run % 25 == 0:
                assert d.identical(first)  # the same answer every time
            del d
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == [], f"{len(compiles)} compilations after the first run"
    growth = rss[RUNS] - rss[10]
    assert growth < RSS_SLACK_MB, f"RSS grew {growth:.1f} MB from run 10 to run {RUNS}"
