"""Benchmark: rmtkit.analyze on a transformer-like model against the linear-algebra floor.

The floor (issue 8): numpy float32 ``eigvalsh`` of each layer's Gram matrix (smaller side),
summed over the model. The model: ``--blocks`` transformer blocks of 4 square (d x d) and 2
(d x 4d) matrices with heavy-tailed (Student-t) random weights, d = 768 by default. Prints the
floor, rmtkit's first run (compiles included) and second run (kernels cached), their ratios,
and the compile count.

    python benchmarks/analyze_floor.py [--blocks 12] [--dim 768]
"""

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    import rmtkit

    layers = make_model(args.blocks, args.dim)
    tree = rmtkit.from_layers(layers)
    floor = floor_seconds(layers)
    t0 = time.perf_counter()
    details = rmtkit.analyze(tree, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    rmtkit.analyze(tree, progress=False)
    second = time.perf_counter() - t0
    print(f"{len(layers)} matrices, d = {args.dim}; alpha median "
          f"{float(np.nanmedian(details.alpha)):.3f}")
    print(f"floor (numpy f32 eigvalsh of Gram, summed): {floor:8.2f} s")
    for label, seconds in (("first run (compiles)", first), ("second run", second)):
        print(f"rmtkit.analyze, {label + ':':<27} {seconds:8.2f} s  {seconds / floor:5.2f}x floor")


if __name__ == "__main__":
    main()
