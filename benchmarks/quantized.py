"""Quantized models: peak memory of an analysis, and the share of dequantization in its time.

Builds, in a temporary folder, a GGUF file (written by gguf's GGUFWriter; ``--gguf-type``,
default Q4_K: K-quant blocks of valid random bytes, since gguf cannot quantize K-quants; Q8_0,
Q4_0 ... are quantized from float weights) and an int4 ONNX model (a chain of ``MatMul`` layers
quantized by onnxruntime's ``MatMulNBitsQuantizer``, block 32), each of ``--layers`` square
matrices of width ``--dim``. For each file, in a fresh process:

- ``rmtkit.analyze(file)`` once to warm the compiled kernels, then timed (median of
  ``--repeats``), and the time to dequantize every layer alone (``W.values`` of each layer of
  ``rmtkit.load(file)``, the work the analysis does to read them; median of ``--repeats``).
  Printed: their ratio, against issue 14's bound of 10 % on the 24-matrix 768-wide case;
- the absolute peak RSS of the process (``VmHWM``) against the bound 1.5 GB + 3 x the largest
  dequantized matrix (float32).

    python benchmarks/quantized.py                         # 24 x 768: the time ratio
    python benchmarks/quantized.py --layers 8 --dim 4096   # memory on larger matrices

Linux only (``/proc/self/status``). Needs the ``gguf`` and ``onnx`` extras and ``onnx-ir``.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import statistics, sys, time
import numpy as np
import rmtkit
from rmtkit.collection import iter_layers

def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

path, repeats = sys.argv[1], int(sys.argv[2])
rmtkit.analyze(path, progress=False)  # compile (or load) the kernels once
analyze, deq = [], []
for _ in range(repeats):
    t0 = time.perf_counter()
    details = rmtkit.analyze(path, progress=False)
    analyze.append(time.perf_counter() - t0)
    tree = rmtkit.load(path)
    t0 = time.perf_counter()
    for _, w in iter_layers(tree):
        np.asarray(w.values)
    deq.append(time.perf_counter() - t0)
ok = int((details["quant"].values != "").sum())
print(details.sizes["layer"], ok, statistics.median(analyze), statistics.median(deq),
      status_kib("VmHWM") * 1024)
"""


def write_gguf(path: Path, layers: int, dim: int, qtype_name: str) -> None:
    """A llama-like GGUF of ``layers`` (dim, dim) matrices of type ``qtype_name``."""
    import gguf

    qtype = gguf.GGMLQuantizationType[qtype_name]
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    for i in range(layers):
        name = f"blk.{i}.ffn_up.weight"
        try:
            data = gguf.quants.quantize(
                (rng.standard_t(3, size=(dim, dim)) * 0.02).astype(np.float32), qtype
            )
        except NotImplementedError:  # K-quants: valid random blocks (fp16 scales finite)
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            data = rng.integers(0, 0x3C, size=(dim, dim // block * size), dtype=np.uint8)
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_int4_onnx(path: Path, layers: int, dim: int) -> None:
    """A chain of ``layers`` MatMul (dim x dim), quantized to int4 blocks of 32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for i in range(layers):
        name = f"layers.{i}.fc.weight"
        w = (rng.standard_t(3, size=(dim, dim)) * 0.02).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [f"h{i - 1}" if i else "x", name], [out]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])],
        inits,
    )
    q = MatMulNBitsQuantizer(helper.make_model(graph), block_size=32, is_symmetric=False)
    q.process()
    onnx.save(q.model.model, str(path))


def measure(path: Path, repeats: int) -> tuple[int, int, float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1]), float(out[2]), float(out[3]), int(out[4])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--gguf-type", default="Q4_K")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    largest = args.dim * args.dim * 4
    bound = 1.5e9 + 3 * largest
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            f"GGUF {args.gguf_type}": Path(tmp) / "model.gguf",
            "ONNX int4 (MatMulNBits)": Path(tmp) / "model.onnx",
        }
        write_gguf(files[f"GGUF {args.gguf_type}"], args.layers, args.dim, args.gguf_type)
        write_int4_onnx(files["ONNX int4 (MatMulNBits)"], args.layers, args.dim)
        print(f"{args.layers} matrices of {args.dim} x {args.dim}; median of {args.repeats}")
        for name, path in files.items():
            n, quantized, t_analyze, t_deq, peak = measure(path, args.repeats)
            size = path.stat().st_size
            print(
                f"{name}: {size / 2**20:.1f} MiB, {n} rows ({quantized} quantized); analyze "
                f"{t_analyze:.2f} s, dequantization {t_deq:.3f} s = {t_deq / t_analyze:.1%} of "
                f"it (bound 10 %: {'within' if t_deq <= 0.1 * t_analyze else 'OVER'}); peak RSS "
                f"{peak / 1e9:.3f} GB, bound 1.5 GB + 3 x {largest / 2**20:.1f} MiB = "
                f"{bound / 1e9:.3f} GB: {'within' if peak <= bound else 'OVER'}"
            )


if __name__ == "__main__":
    main()
