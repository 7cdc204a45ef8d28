"""Benchmark: rmtkit.analyze on a transformer-like model against the linear-algebra floor.

The floor (issue 8): numpy float32 ``eigvalsh`` of each layer's Gram matrix (smaller side),
summed over the model. The model: ``--blocks`` transformer blocks of 4 square (d x d) and 2
(d x 4d) matrices with heavy-tailed (Student-t) random weights, d = 768 by default.

Every measurement runs in a fresh process (imports and model construction excluded, JIT
compilation included), in this order, so the floor and rmtkit share the process and the
minute (the floor itself drifts by 20 % between minutes on a shared machine):

1. ``rmtkit.analyze`` (default options), the process's first call: ``cold`` with an empty
   persistent compilation cache (a first-ever run: every kernel compiles), ``fresh`` with the
   cache the cold run filled (every later run of a user);
2. the floor;
3. ``rmtkit.analyze`` again (``warm``: kernels in memory);
4. the floor again.

Ratios divide by the mean of the process's two floor measurements. One cold process and
``--runs`` fresh ones (median and range printed). Every run also checks that the per-layer
alphas equal the cold run's (determinism).

    python benchmarks/analyze_floor.py [--blocks 12] [--dim 768] [--runs 5] [--threads N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_model(blocks: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of a transformer-like stack, float32, in canonical (fan_out, fan_in) layout."""
    rng = np.random.default_rng(seed)
    layers = {}
    for b in range(blocks):
        for name in ("q", "k", "v", "o"):
            layers[f"block{b}/attn/{name}"] = rng.standard_t(3.0, (dim, dim)).astype(np.float32)
        layers[f"block{b}/mlp/up"] = rng.standard_t(3.0, (4 * dim, dim)).astype(np.float32)
        layers[f"block{b}/mlp/down"] = rng.standard_t(3.0, (dim, 4 * dim)).astype(np.float32)
    return layers


def floor_seconds(layers: dict[str, np.ndarray]) -> float:
    """Sum over layers of numpy float32 eigvalsh of the smaller-side Gram matrix (timed only)."""
    total = 0.0
    for w in layers.values():
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        t0 = time.perf_counter()
        np.linalg.eigvalsh(gram)
        total += time.perf_counter() - t0
    return total


def _child(blocks: int, dim: int) -> None:
    """In a fresh process: analyze, floor, analyze, floor; print JSON (seconds, alphas)."""
    import rmtkit

    layers = make_model(blocks, dim)
    tree = rmtkit.from_layers(layers)
    out = {"analyze": [], "floor": []}
    for _ in range(2):
        t0 = time.perf_counter()
        details = rmtkit.analyze(tree, progress=False)
        out["analyze"].append(time.perf_counter() - t0)
        out["floor"].append(floor_seconds(layers))
    out["alpha"] = [float(a) for a in details.alpha.values]
    print(json.dumps(out))


def run_child(blocks: int, dim: int, cache: str, threads: int | None) -> dict:
    """One fresh process (:func:`_child`) with the compile cache ``cache``."""
    env = dict(os.environ, RMTKIT_JAX_CACHE=cache)
    if threads is not None:
        env["RMTKIT_THREADS"] = str(threads)
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--blocks", str(blocks), "--dim", str(dim)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _ratios(run: dict) -> tuple[float, float, float]:
    """(floor seconds, first-call ratio, second-call ratio) of one process."""
    floor = float(np.mean(run["floor"]))
    return floor, run["analyze"][0] / floor, run["analyze"][1] / floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="RMTKIT_THREADS for rmtkit (default: all usable cores)",
    )
    parser.add_argument("--runs", type=int, default=5, help="fresh processes (cache warm)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.blocks, args.dim)
        return
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child(args.blocks, args.dim, cache, args.threads)
        fresh = [run_child(args.blocks, args.dim, cache, args.threads) for _ in range(args.runs)]
    same = all(run["alpha"] == cold["alpha"] for run in fresh)
    print(
        f"{len(cold['alpha'])} matrices, d = {args.dim}; alpha median "
        f"{float(np.nanmedian(cold['alpha'])):.3f}; identical alphas across processes: {same}"
    )
    print(f"{'process':<28}{'floor s':>9}{'analyze s':>11}{'ratio':>8}")
    floor, first, _ = _ratios(cold)
    print(f"{'cold, first call':<28}{floor:9.2f}{cold['analyze'][0]:11.2f}{first:7.2f}x")
    rows = [_ratios(run) for run in fresh]
    for i, (run, (floor, first, second)) in enumerate(zip(fresh, rows, strict=True)):
        print(
            f"{f'fresh {i + 1}, first call':<28}{floor:9.2f}{run['analyze'][0]:11.2f}{first:7.2f}x"
        )
        print(
            f"{f'fresh {i + 1}, second call':<28}{floor:9.2f}{run['analyze'][1]:11.2f}"
            f"{second:7.2f}x"
        )
    firsts, seconds = [r[1] for r in rows], [r[2] for r in rows]
    print(
        f"fresh process, first call:  median {np.median(firsts):.2f}x "
        f"(range {min(firsts):.2f}-{max(firsts):.2f}x over {len(rows)} processes)"
    )
    print(
        f"same process, second call:  median {np.median(seconds):.2f}x "
        f"(range {min(seconds):.2f}-{max(seconds):.2f}x)"
    )


if __name__ == "__main__":
    main()
