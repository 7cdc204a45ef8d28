"""Peak memory of loading and reading a sharded safetensors folder, one tensor at a time.

Builds a Hugging Face style sharded folder (``model-0000k-of-0000n.safetensors`` + index) of
``--gb`` GB of float32 weights, then in a fresh process loads it with ``rmtkit.load`` and reads
every layer's ``W`` (a Frobenius norm each, as an analysis would), and prints the folder size,
the largest tensor and the peak RSS (``VmHWM``) above the process's resident set before loading.
(Not ``resource.ru_maxrss``: on Linux it carries the parent's RSS across fork + exec.) Linux only.

    python benchmarks/adapters_memory.py --gb 1.0
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
        names = [f"model.layers.{i}.mlp.weight" for i in range(s * per_shard,
                                                                  min(n, (s + 1) * per_shard))]
        header, offset = {}, 0
        for name in names:
            header[name] = {"dtype": "F32", "shape": [2 * dim, dim],
                            "data_offsets": [offset, offset + tensor_bytes]}
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
import rmtkit._load as L
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


def measure(folder: Path) -> tuple[int, int]:
    """(layers read, peak RSS growth in bytes) of loading ``folder`` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        largest = write_folder(folder, int(args.gb * 2**30))
        size = sum(p.stat().st_size for p in folder.iterdir())
        n, growth = measure(folder)
    print(f"folder size        {size / 2**20:9.1f} MiB ({n} layers)")
    print(f"largest tensor     {largest / 2**20:9.1f} MiB")
    print(f"peak RSS growth    {growth / 2**20:9.1f} MiB "
          f"({growth / size:.1%} of the folder, {growth / largest:.2f}x the largest tensor)")


if __name__ == "__main__":
    main()
