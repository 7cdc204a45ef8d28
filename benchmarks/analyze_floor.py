"""Benchmark: rmtkit.analyze on a transformer-like model against the linear-algebra floor.

The floor (issue 8): numpy float32 ``eigvalsh`` of each layer's Gram matrix (smaller side),
summed over the model. The model: ``--blocks`` transformer blocks of 4 square (d x d) and 2
(d x 4d) matrices with heavy-tailed (Student-t) random weights, d = 768 by default.

Each rmtkit timing runs ``rmtkit.analyze`` (default options) in a fresh process, timing the
call alone (imports and model construction excluded, JIT compilation included):

- ``cold``: empty persistent compilation cache (a first-ever run: every kernel compiles);
- ``fresh process``: the cache filled by the cold run (every later run of a user);
- ``same process``: a second call in the process of the previous line (kernels in memory).

Every run also prints the per-layer alpha agreement with the first run (determinism).

    python benchmarks/analyze_floor.py [--blocks 12] [--dim 768] [--threads N]
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


def _child(blocks: int, dim: int, repeats: int) -> None:
    """In a fresh process: time ``repeats`` analyze calls, print JSON (seconds, alphas)."""
    import rmtkit

    tree = rmtkit.from_layers(make_model(blocks, dim))
    seconds, alphas = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        details = rmtkit.analyze(tree, progress=False)
        seconds.append(time.perf_counter() - t0)
        alphas = [float(a) for a in details.alpha.values]
    print(json.dumps({"seconds": seconds, "alpha": alphas}))


def run_child(blocks: int, dim: int, repeats: int, cache: str, threads: int | None) -> dict:
    env = dict(os.environ, RMTKIT_JAX_CACHE=cache)
    if threads is not None:
        env["RMTKIT_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, __file__, "--child", "--blocks", str(blocks),
                          "--dim", str(dim), "--repeats", str(repeats)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=None,
                        help="RMTKIT_THREADS for rmtkit (default: all usable cores)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.blocks, args.dim, args.repeats)
        return
    layers = make_model(args.blocks, args.dim)
    floor = floor_seconds(layers)
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child(args.blocks, args.dim, 1, cache, args.threads)
        warm = run_child(args.blocks, args.dim, 2, cache, args.threads)
    floor_after = floor_seconds(layers)
    same = cold["alpha"] == warm["alpha"]
    print(f"{len(layers)} matrices, d = {args.dim}; alpha median "
          f"{float(np.nanmedian(cold['alpha'])):.3f}; identical alphas across runs: {same}")
    print(f"floor (numpy f32 eigvalsh of Gram, summed): {floor:8.2f} s "
          f"(again after the runs: {floor_after:.2f} s)")
    floor = min(floor, floor_after)
    for label, seconds in (("cold (empty compile cache)", cold["seconds"][0]),
                           ("fresh process (cache warm)", warm["seconds"][0]),
                           ("same process, second call", warm["seconds"][1])):
        print(f"rmtkit.analyze, {label + ':':<28} {seconds:8.2f} s  {seconds / floor:5.2f}x floor")


if __name__ == "__main__":
    main()
