"""Benchmark: rmtkit.analyze and analyze_many on a dask.distributed cluster, by worker count.

A sharded safetensors folder (``--layers`` matrices of ``2d x d``, float32, heavy-tailed) is
loaded lazily and made dask-backed (``rmtkit.load(folder).chunk()``): with a client active,
``rmtkit.analyze`` runs one task per layer on the workers, which read their own tensors from
the files. For each worker count (``LocalCluster(n_workers=k, threads_per_worker=1)``, worker
processes) it prints the time of ``analyze`` and of ``analyze_many`` over ``--models`` copies
of the folder (one task per model), the speed-up over one worker, and whether the Dataset is
identical to the local (threads) result.

    python benchmarks/dask_scaleout.py [--workers 1 2] [--layers 16] [--dim 1024]

An existing cluster: ``Client("tcp://scheduler:8786")`` instead of the LocalCluster (the
workers must see the model files, e.g. on a shared filesystem).
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def write_model(folder: Path, layers: int, dim: int, seed: int = 0) -> None:
    """A safetensors file of ``layers`` heavy-tailed ``(2*dim, dim)`` float32 matrices."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {
        f"model.layers.{i}.mlp.weight": rng.standard_t(3.0, (2 * dim, dim)).astype(np.float32)
        for i in range(layers)
    }
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"layers": layers, "dim": dim}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--models", type=int, default=4)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    import rmtkit

    tmp = Path(tempfile.mkdtemp())
    try:
        model = tmp / "model"
        write_model(model, args.layers, args.dim)
        models = {}
        for i in range(args.models):
            shutil.copytree(model, tmp / f"ckpt{i}")
            models[f"ckpt{i}"] = str(tmp / f"ckpt{i}" / "model.safetensors")
        path = str(model / "model.safetensors")
        rmtkit.analyze(path, progress=False, executor="threads")  # compile the kernels once
        t0 = time.perf_counter()
        local = rmtkit.analyze(path, progress=False, executor="threads")
        local_s = time.perf_counter() - t0
        print(f"{args.layers} layers of {2 * args.dim}x{args.dim}; local threads: {local_s:.2f} s")
        base = {}
        for k in args.workers:
            with (
                LocalCluster(
                    n_workers=k, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(lambda: __import__("rmtkit.analysis"))  # warm the worker imports
                t0 = time.perf_counter()
                out = rmtkit.analyze(rmtkit.load(path).chunk(), progress=False)
                one = time.perf_counter() - t0
                t0 = time.perf_counter()
                many = rmtkit.analyze_many(models, progress=False)
                batch = time.perf_counter() - t0
            base.setdefault("one", one)
            base.setdefault("many", batch)
            same = out.drop_attrs().identical(local.drop_attrs())
            print(
                f"{k} worker(s): analyze {one:7.2f} s (x{base['one'] / one:4.2f}), "
                f"analyze_many of {args.models} models {batch:7.2f} s "
                f"(x{base['many'] / batch:4.2f}); identical to local: {same}; "
                f"{many.sizes['model']} models x {many.sizes['layer']} layers"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
