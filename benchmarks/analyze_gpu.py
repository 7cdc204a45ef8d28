"""Benchmark: rmtkit.analyze on a 7B-class layer set on a GPU (the device spectrum route).

The layer set of a 7B transformer: ``--blocks`` (32) blocks of 4 square ``d x d`` attention
matrices and 3 ``d x f`` MLP matrices (d = 4096, f = 11008), heavy-tailed random weights
generated on the device per layer when the analysis reads it (a lazy collection: host memory
stays at one layer). Prints the GPU floor (``jnp.linalg.eigvalsh`` of each float32 Gram
matrix on the device, summed, Gram products excluded), ``rmtkit.analyze`` on the device route
(first call: compiles included; second call), their ratios, and how many slices needed the
float64 recompute (:mod:`rmtkit._engine.device`), and, for ``--check`` layers (one per shape),
the device spectra against the CPU route's float64 ones (docs/math.md §1's contract: 1e-5
relative for the eigenvalues >= 1e-6 lambda_max) and the alphas fitted to both.

    python benchmarks/analyze_gpu.py                      # needs a GPU (JAX with CUDA)
    python benchmarks/analyze_gpu.py --blocks 1 --scale 16 --force   # smoke run on a CPU

Measured numbers go to benchmarks/README.md with the device named.
"""

import argparse
import os
import time

import numpy as np


def layer_shapes(blocks: int, dim: int, ffn: int) -> dict[str, tuple[int, int]]:
    shapes = {}
    for b in range(blocks):
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"layers/{b}/self_attn/{name}"] = (dim, dim)
        shapes[f"layers/{b}/mlp/gate_proj"] = (ffn, dim)
        shapes[f"layers/{b}/mlp/up_proj"] = (ffn, dim)
        shapes[f"layers/{b}/mlp/down_proj"] = (dim, ffn)
    return shapes


def make_loader(index: int, shape: tuple[int, int]):
    """Loader of one layer: Student-t(3) weights drawn on the device, float32, to host."""
    import jax

    def load() -> np.ndarray:
        key = jax.random.fold_in(jax.random.key(0), index)
        return np.asarray(jax.random.t(key, 3.0, shape, dtype="float32"))

    return load


def lazy_collection(shapes: dict[str, tuple[int, int]]):
    from rmtkit.collection import LazyArray, build_tree, weight_node

    nodes = [
        (
            path,
            weight_node(
                LazyArray(make_loader(i, shape), shape, np.float32),
                kind="dense",
                source=path,
                layer_id=i,
            ),
        )
        for i, (path, shape) in enumerate(shapes.items())
    ]
    return build_tree(nodes)


def gpu_floor(shapes: dict[str, tuple[int, int]]) -> float:
    """Sum of device float32 eigvalsh of each Gram matrix (smaller side), timed alone."""
    import jax
    import jax.numpy as jnp

    eig = jax.jit(jnp.linalg.eigvalsh)
    total = 0.0
    for i, shape in enumerate(shapes.values()):
        w = jax.device_put(make_loader(i, shape)())
        gram = (w.T @ w if shape[0] >= shape[1] else w @ w.T).block_until_ready()
        if i == 0 or shape != list(shapes.values())[i - 1]:
            eig(gram).block_until_ready()  # compile outside the timing
        t0 = time.perf_counter()
        eig(gram).block_until_ready()
        total += time.perf_counter() - t0
    return total


def host_agreement(shapes: dict[str, tuple[int, int]], count: int) -> list[str]:
    """The device route against the host route (float64 LAPACK, docs/math.md §1) on the first
    layer of each shape, ``count`` layers at most: eigenvalues (max relative error over those
    >= 1e-6 lambda_max, contract 1e-5), the alpha of :func:`rmtkit.fit_pl` on both spectra,
    and lambda_max. One line per layer."""
    import jax

    import rmtkit
    from rmtkit._engine.device import device_esd
    from rmtkit._engine.host import host_esd

    lines, seen = [], set()
    for i, (path, shape) in enumerate(shapes.items()):
        if shape in seen or len(seen) >= count:
            continue
        seen.add(shape)
        w = make_loader(i, shape)()
        ours, ref = device_esd(w), host_esd(w)
        keep = ref >= 1e-6 * ref[-1]
        err = float(np.max(np.abs(ours[keep] - ref[keep]) / ref[keep]))
        with jax.enable_x64(True):
            a_dev, a_host = (float(rmtkit.fit_pl(e).alpha) for e in (ours, ref))
        lines.append(
            f"{path} {shape}: eigenvalues max rel err {err:.1e} "
            f"({'within' if err <= 1e-5 else 'OUTSIDE'} the 1e-5 contract); alpha device "
            f"{a_dev:.6f} host {a_host:.6f}; lambda_max rel diff "
            f"{abs(ours[-1] - ref[-1]) / ref[-1]:.1e}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=32)
    parser.add_argument("--scale", type=int, default=1, help="divide d and f by this")
    parser.add_argument(
        "--force", action="store_true", help="force the device route even without a GPU (smoke run)"
    )
    parser.add_argument(
        "--check",
        type=int,
        default=2,
        help="layers (one per shape) compared with the CPU route's float64 spectra (0: none)",
    )
    args = parser.parse_args()
    if args.force:
        os.environ["RMTKIT_DEVICE_SPECTRA"] = "1"
    import jax

    import rmtkit
    from rmtkit._engine import device as _device
    from rmtkit._engine.spectra import use_device

    if not use_device():
        raise SystemExit(
            f"JAX sees no GPU (backend {jax.default_backend()!r}); "
            "use --force for a smoke run of the device route on the CPU."
        )
    shapes = layer_shapes(args.blocks, 4096 // args.scale, 11008 // args.scale)
    tree = lazy_collection(shapes)
    recomputed = []
    original = _device._unresolved

    def counting(evals, eps):
        out = original(evals, eps)
        if eps == float(np.finfo(np.float32).eps):
            recomputed.append(int(out.sum()))
        return out

    _device._unresolved = counting
    floor = gpu_floor(shapes)
    t0 = time.perf_counter()
    details = rmtkit.analyze(tree, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    rmtkit.analyze(tree, progress=False)
    second = time.perf_counter() - t0
    print(
        f"device {jax.devices()[0].device_kind}; {len(shapes)} matrices "
        f"({args.blocks} blocks, d = {4096 // args.scale}, f = {11008 // args.scale}); "
        f"alpha median {float(np.nanmedian(details.alpha)):.3f}"
    )
    print(f"slices recomputed in float64: {sum(recomputed[: len(shapes)])} of {len(shapes)}")
    print(f"GPU floor (f32 eigvalsh of Gram, summed): {floor:8.2f} s")
    for label, seconds in (("first call (compiles)", first), ("second call", second)):
        print(f"rmtkit.analyze, {label + ':':<23} {seconds:8.2f} s  {seconds / floor:5.2f}x floor")
    for line in host_agreement(shapes, args.check):
        print(f"vs the CPU route: {line}")


if __name__ == "__main__":
    main()
