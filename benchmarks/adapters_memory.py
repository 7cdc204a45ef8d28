"""Peak memory of loading and reading (or analysing) a sharded safetensors folder.

Builds a Hugging Face style sharded folder (``model-0000k-of-0000n.safetensors`` + index) of
``--gb`` GB of float32 weights, then in a fresh process loads it with ``rmtkit.load`` and reads
every layer's ``W`` (a Frobenius norm each, as an analysis would), and prints the folder size,
the largest tensor and the peak RSS (``VmHWM``) above the process's resident set before loading.
(Not ``resource.ru_maxrss``: on Linux it carries the parent's RSS across fork + exec.) Linux only.

    python benchmarks/adapters_memory.py --gb 1.0
    python benchmarks/adapters_memory.py --gb 1.0 --analyze   # rmtkit.analyze(folder)

With ``--analyze`` the child runs ``rmtkit.analyze`` on the folder (default options, threads
and memory budget as configured) and the report adds the absolute peak RSS of the process
against issue 8's bound, 1.5 GB + 3x the largest matrix.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def write_folder(folder: Path, total_bytes: int, dim: int = 2048, per_shard: int = 8) -> int:
    """Write (dim*2, dim) float32 tensors in shards until ``total_bytes``; return the largest."""
    rng = np.random.default_rng(0)
    tensor_bytes = 2 * dim * dim * 4
    n = max(1, total_bytes // tensor_bytes)
    n_shards = -(-n // per_shard)
    weight_map = {}
    for s in range(n_shards):
        shard = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        names = [
            f"model.layers.{i}.mlp.weight"
            for i in range(s * per_shard, min(n, (s + 1) * per_shard))
        ]
        header, offset = {}, 0
        for name in names:
            header[name] = {
                "dtype": "F32",
                "shape": [2 * dim, dim],
                "data_offsets": [offset, offset + tensor_bytes],
            }
            offset += tensor_bytes
            weight_map[name] = shard
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / shard, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            block = rng.standard_normal((2 * dim, dim), dtype=np.float32).tobytes()
            for _ in names:
                f.write(block)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return tensor_bytes


CHILD = """
import sys, numpy as np
import rmtkit as L
from rmtkit.collection import iter_layers
def status_kib(field):  # VmRSS: resident now; VmHWM: peak of this process image
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
base = status_kib("VmRSS")
tree = L.load(sys.argv[1])
n = 0
for _, w in iter_layers(tree):
    float(np.linalg.norm(w.values)); n += 1
peak = status_kib("VmHWM")
print(n, (peak - base) * 1024)
"""


ANALYZE_CHILD = """
import sys, time
import rmtkit
def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
base = status_kib("VmRSS")
t0 = time.perf_counter()
details = rmtkit.analyze(sys.argv[1], progress=False)
seconds = time.perf_counter() - t0
peak = status_kib("VmHWM")
print(details.sizes["layer"], (peak - base) * 1024, peak * 1024, seconds)
"""


def measure(folder: Path, analyze: bool = False) -> tuple[int, int, int, float]:
    """(layers, peak RSS growth, absolute peak RSS in bytes, seconds) of reading (or
    analysing) ``folder`` in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", ANALYZE_CHILD if analyze else CHILD, str(folder)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fields = out.split()
    if analyze:
        return int(fields[0]), int(fields[1]), int(fields[2]), float(fields[3])
    return int(fields[0]), int(fields[1]), 0, 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run rmtkit.analyze on the folder instead of reading each layer",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        largest = write_folder(folder, int(args.gb * 2**30))
        size = sum(p.stat().st_size for p in folder.iterdir())
        n, growth, peak, seconds = measure(folder, args.analyze)
    print(f"folder size        {size / 2**20:9.1f} MiB ({n} layers)")
    print(f"largest tensor     {largest / 2**20:9.1f} MiB")
    print(
        f"peak RSS growth    {growth / 2**20:9.1f} MiB "
        f"({growth / size:.1%} of the folder, {growth / largest:.2f}x the largest tensor)"
    )
    if args.analyze:
        bound = 1.5e9 + 3 * largest
        print(
            f"analyze: {seconds:.1f} s; peak RSS {peak / 1e9:.3f} GB, bound 1.5 GB + 3 x "
            f"largest = {bound / 1e9:.3f} GB: {'within' if peak <= bound else 'OVER'}"
        )


if __name__ == "__main__":
    main()
