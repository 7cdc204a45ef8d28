"""Benchmark: rmtkit.analyze against WeightWatcher 0.7.7 ``analyze()`` on the same matrices.

WeightWatcher is not a dependency of rmtkit: run this in an environment that has both,
for example::

    python3 -m venv /tmp/wwenv
    /tmp/wwenv/bin/pip install weightwatcher==0.7.7 torch==2.13.0 -e .
    /tmp/wwenv/bin/python benchmarks/vs_weightwatcher.py [--blocks 12] [--dim 768]

The model is the transformer-like stack of ``analyze_floor.py`` (``--blocks`` blocks of 4
d x d and 2 d x 4d heavy-tailed matrices), as ``torch.nn.Linear`` layers for WeightWatcher and
as the same arrays for rmtkit; both run in this process with the same thread settings. Two
option sets: the defaults, and ``randomize=True, mp_fit=True``. rmtkit is timed on its first
call in the process (JIT compilation included; the persistent compilation cache is whatever
the environment has, printed) and on a second call. Also printed: the floor of
``analyze_floor.py`` and the per-layer agreement of alpha.
"""

import argparse
import contextlib
import io
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze_floor import floor_seconds, make_model  # noqa: E402


def torch_model(layers: dict[str, np.ndarray]):
    """A ``torch.nn.Module`` with one bias-free Linear per matrix (weight = the matrix)."""
    import torch
    from torch import nn

    model = nn.Module()
    for i, w in enumerate(layers.values()):
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
        model.add_module(f"layer{i:03d}", lin)
    return model


def time_ww(model, **options) -> tuple[float, np.ndarray]:
    """Seconds of ``WeightWatcher(model).analyze(**options)`` and its alpha column."""
    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    watcher = ww.WeightWatcher(model=model)
    np.random.seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        details = watcher.analyze(**options)
        seconds = time.perf_counter() - t0
    return seconds, details["alpha"].to_numpy(dtype=float)


def time_rmtkit(tree, **options) -> tuple[float, float, np.ndarray]:
    """Seconds of the first and second ``rmtkit.analyze(tree, **options)``; alpha."""
    import rmtkit

    t0 = time.perf_counter()
    details = rmtkit.analyze(tree, progress=False, **options)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    rmtkit.analyze(tree, progress=False, **options)
    second = time.perf_counter() - t0
    return first, second, details.alpha.values


def agreement(a: np.ndarray, b: np.ndarray) -> str:
    """Per-layer alpha agreement, as text."""
    diff = np.abs(a - b)
    return (
        f"max |d alpha| {np.nanmax(diff):.2e}, median {np.nanmedian(diff):.2e}, "
        f"{int(np.sum(diff < 1e-6))}/{len(a)} equal to 1e-6"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument(
        "--rand-blocks",
        type=int,
        default=2,
        help="blocks for randomize=True, mp_fit=True (WeightWatcher's MP fit "
        "takes minutes per block)",
    )
    args = parser.parse_args()
    import weightwatcher

    import rmtkit
    from rmtkit._engine.executor import compilation_cache_dir, worker_count

    print(
        f"weightwatcher {weightwatcher.__version__}, rmtkit {rmtkit.__version__} "
        f"({worker_count()} threads, compile cache {compilation_cache_dir()})"
    )
    for label, blocks, options in (
        ("defaults", args.blocks, {}),
        ("randomize=True, mp_fit=True", args.rand_blocks, dict(randomize=True, mp_fit=True)),
    ):
        if blocks < 1:
            continue
        layers = make_model(blocks, args.dim)
        model, tree = torch_model(layers), rmtkit.from_layers(layers)
        floor = floor_seconds(layers)
        print(
            f"\n{label}: {len(layers)} matrices, d = {args.dim}; floor (numpy f32 eigvalsh "
            f"of Gram, summed) {floor:.2f} s"
        )
        ww_s, ww_alpha = time_ww(model, **options)
        first, second, alpha = time_rmtkit(tree, **options)
        print(f"  WeightWatcher: {ww_s:8.2f} s  ({ww_s / floor:5.2f}x floor)")
        print(
            f"  rmtkit first:  {first:8.2f} s  ({first / floor:5.2f}x floor)  "
            f"speed-up {ww_s / first:6.1f}x"
        )
        print(
            f"  rmtkit second: {second:8.2f} s  ({second / floor:5.2f}x floor)  "
            f"speed-up {ww_s / second:6.1f}x"
        )
        print(f"  alpha agreement: {agreement(alpha, ww_alpha)}")


if __name__ == "__main__":
    main()
