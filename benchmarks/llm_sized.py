"""Benchmark: an LLM-sized model on one machine -- rmtkit against WeightWatcher 0.7.7.

Writes a sharded Hugging Face-style safetensors folder with the shapes of a 7B-class model
(LLaMA-2-7B: d = 4096, f = 11008, vocabulary 32000): the token embedding (32000 x 4096, its
own shard) and ``--blocks`` of the 32 transformer blocks (4 attention matrices d x d, 3 MLP
matrices f x d / d x f; one shard each), float16 (as the released checkpoints), heavy-tailed
random weights, plus ``model.safetensors.index.json``. About 0.26 GB + 0.40 GB per block on
disk, in a temporary folder (``--dir`` to choose where), deleted at the end.

Then, each in a fresh process, both tools stream the folder from disk (neither holds the
model in memory):

- ``rmtkit.analyze(folder)`` (default options: all cores, one layer per core, the compile
  cache of the environment) and ``rmtkit.analyze`` of the embedding alone;
- WeightWatcher 0.7.7 ``WeightWatcher(model=folder).analyze()`` (its own sharded-safetensors
  reader, in its own interpreter: ``--ww-python``; WeightWatcher is no dependency of rmtkit)
  and of the embedding alone.

Reported for each tool: seconds for the folder and for the embedding, time per block
((folder - embedding) / blocks), the extrapolated whole model (embedding + 32 blocks; a
LLaMA's ``lm_head``, another 32000 x 4096 matrix, would add one embedding time), peak RSS
(``ru_maxrss``) against the bound of issue 18 (1.5 GB + 3 x the largest matrix, counted as
float32: 3 x 0.52 GB), and WW / rmtkit ratios measured in the same run (target >= 3x).
Alphas of the layers both tools report are compared.

On a machine with a GPU (JAX with CUDA), rmtkit takes its device route
(:mod:`rmtkit._engine.device`) by itself; ``--device-route`` forces it (a CPU smoke run) and
``--host-route`` forbids it. The route used is printed.

    python benchmarks/llm_sized.py --ww-python /tmp/wwenv/bin/python --blocks 2
    python benchmarks/llm_sized.py --blocks 1 --scale 8          # quick check, no WW
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

#: LLaMA-2-7B
DIM, FFN, VOCAB, BLOCKS_7B = 4096, 11008, 32000, 32
GB = 1e9

RMTKIT_CHILD = """
import json, resource, sys, time
import jax
import rmtkit
from rmtkit._engine.spectra import use_device
t0, c0 = time.perf_counter(), time.process_time()
details = rmtkit.analyze(sys.argv[1], progress=False)
t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"seconds": t1 - t0, "cpu": c1 - c0,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "route": ("device " + jax.devices()[0].device_kind) if use_device() else "host",
                  "names": [str(n) for n in details.name.values],
                  "alpha": [float(a) for a in details.alpha.values],
                  "lambda_max": [float(a) for a in details.lambda_max.values]}))
"""

WW_CHILD = """
import contextlib, io, json, logging, resource, sys, time
import numpy as np
import weightwatcher as ww
logging.getLogger("weightwatcher").setLevel(logging.ERROR)
np.random.seed(0)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    t0, c0 = time.perf_counter(), time.process_time()
    details = ww.WeightWatcher(model=sys.argv[1]).analyze()
    t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"seconds": t1 - t0, "cpu": c1 - c0,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "names": [str(n) for n in details["name"]],
                  "alpha": [float(a) for a in details["alpha"]],
                  "lambda_max": [float(a) for a in details["lambda_max"]]}))
"""


def block_shapes(block: int, dim: int, ffn: int) -> dict[str, tuple[int, int]]:
    """Tensor names and (out, in) shapes of one LLaMA block, in PyTorch layout."""
    prefix = f"model.layers.{block}"
    shapes = {f"{prefix}.self_attn.{p}_proj.weight": (dim, dim) for p in "qkvo"}
    shapes[f"{prefix}.mlp.gate_proj.weight"] = (ffn, dim)
    shapes[f"{prefix}.mlp.up_proj.weight"] = (ffn, dim)
    shapes[f"{prefix}.mlp.down_proj.weight"] = (dim, ffn)
    return shapes


def heavy_tailed(rng: np.random.Generator, shape: tuple[int, int], dtype) -> np.ndarray:
    """Student-t (3 dof) weights times 0.02, in ``dtype``, drawn in row chunks (bounded
    memory)."""
    out = np.empty(shape, dtype=dtype)
    step = max(1, (1 << 24) // shape[1])
    for start in range(0, shape[0], step):
        rows = min(step, shape[0] - start)
        out[start : start + rows] = rng.standard_t(3.0, (rows, shape[1])) * 0.02
    return out


def write_model(folder: str, blocks: int, dim: int, ffn: int, vocab: int) -> dict:
    """The sharded folder (module docstring); returns the shard of every tensor."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    shards = [{"model.embed_tokens.weight": (vocab, dim)}]
    shards += [block_shapes(b, dim, ffn) for b in range(blocks)]
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {k: heavy_tailed(rng, shape, np.float16) for k, shape in shard.items()}
        save_file(tensors, os.path.join(folder, name), metadata={"format": "pt"})
        total += sum(t.nbytes for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, name))
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=1)
    return weight_map


def embedding_folder(folder: str, weight_map: dict) -> str:
    """A folder holding only the embedding shard (a link), for the embedding-alone runs."""
    sub = os.path.join(folder, "embedding_only")
    os.makedirs(sub)
    shard = weight_map["model.embed_tokens.weight"]
    os.symlink(os.path.join(folder, shard), os.path.join(sub, "model.safetensors"))
    return sub


def child(
    label: str, python: str, code: str, path: str, env: dict, timeout: float | None = None
) -> dict:
    """``code`` in a fresh ``python`` on ``path``; its last line of output, as JSON, printed
    at once as one line (a long run keeps what it measured). Past ``timeout`` seconds the
    process is killed and ``{"timeout": timeout}`` returned."""
    try:
        proc = subprocess.run(
            [python, "-c", code, path],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"  {label} on {path}: killed after {timeout:.0f} s", flush=True)
        return {"timeout": timeout}
    if proc.returncode != 0:
        raise SystemExit(f"{python} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"  {label} on {path}: {out['seconds']:.1f} s, CPU {out['cpu']:.1f} s,"
        f" peak RSS {out['rss'] / GB:.2f} GB",
        flush=True,
    )
    return out


def summary(label: str, full: dict, embed: dict, blocks: int, bound: float) -> dict:
    """Print one tool's line; return its derived numbers."""
    per_block = (full["seconds"] - embed["seconds"]) / blocks
    whole = embed["seconds"] + BLOCKS_7B * per_block
    rss = max(full["rss"], embed["rss"])
    print(
        f"{label:<14}{full['seconds']:9.1f}{embed['seconds']:9.1f}{per_block:10.1f}"
        f"{whole / 60:10.1f}{full['cpu']:9.1f}{rss / GB:9.2f}  "
        f"{'yes' if rss <= bound else 'NO'}"
    )
    return {"per_block": per_block, "whole": whole, "rss": rss}


def agreement(a: dict, b: dict, key: str) -> str:
    """Agreement of ``key`` over the layers both runs report (matched by name)."""
    ours = {n.replace("/", ".").removesuffix(".weight"): v for n, v in zip(a["names"], a[key])}
    theirs = {n.removesuffix(".weight"): v for n, v in zip(b["names"], b[key])}
    common = [n for n in ours if n in theirs]
    if not common:
        return f"no common layer names ({len(ours)} vs {len(theirs)})"
    x = np.array([ours[n] for n in common])
    y = np.array([theirs[n] for n in common])
    rel = np.abs(x - y) / np.maximum(np.abs(y), 1e-300)
    return f"{len(common)} layers, max relative difference {np.nanmax(rel):.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ww-python", help="interpreter with weightwatcher==0.7.7 and torch")
    parser.add_argument("--blocks", type=int, default=2, help="of the 32 blocks (default 2)")
    parser.add_argument("--scale", type=int, default=1, help="divide d, f and vocab by this")
    parser.add_argument("--dir", help="where to write the model (default: a temp folder)")
    parser.add_argument(
        "--ww-timeout", type=float, help="seconds per WW run (killed after: a lower bound)"
    )
    route = parser.add_mutually_exclusive_group()
    route.add_argument("--device-route", action="store_true", help="force the device route")
    route.add_argument("--host-route", action="store_true", help="forbid the device route")
    args = parser.parse_args()
    dim, ffn, vocab = DIM // args.scale, FFN // args.scale, VOCAB // args.scale
    env = dict(os.environ)
    if args.device_route or args.host_route:
        env["RMTKIT_DEVICE_SPECTRA"] = "1" if args.device_route else "0"
    largest = vocab * dim * 4  # the embedding, as float32 (what the analysis holds)
    bound = 1.5 * GB + 3 * largest
    folder = tempfile.mkdtemp(prefix="rmtkit-llm-", dir=args.dir)
    try:
        weight_map = write_model(folder, args.blocks, dim, ffn, vocab)
        embed = embedding_folder(folder, weight_map)
        on_disk = sum(
            os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if "of" in f
        )
        print(
            f"{len(weight_map)} matrices (embedding {vocab}x{dim} + {args.blocks} blocks of 4 "
            f"{dim}x{dim}, 3 {ffn}x{dim}), float16, {on_disk / GB:.2f} GB in {len(weight_map)}"
            f" tensors; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        paths = (folder, embed)
        runs = {"rmtkit": [child("rmtkit", sys.executable, RMTKIT_CHILD, p, env) for p in paths]}
        if args.ww_python:
            runs["ww"] = [
                child("WW 0.7.7", args.ww_python, WW_CHILD, p, env, args.ww_timeout) for p in paths
            ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"rmtkit route: {runs['rmtkit'][0]['route']}")
    print(
        f"{'':<14}{'folder s':>9}{'embed s':>9}{'s/block':>10}{'7B min':>10}{'CPU s':>9}"
        f"{'peak GB':>9}  <= {bound / GB:.2f} GB (1.5 GB + 3 x {largest / GB:.2f} GB)"
    )
    ours = summary("rmtkit", *runs["rmtkit"], args.blocks, bound)
    if "ww" in runs:
        report_ww(runs, ours, args, bound)


def report_ww(runs: dict, ours: dict, args, bound: float) -> None:
    """WeightWatcher's line and the WW / rmtkit ratios (a lower bound where WW timed out)."""
    (full, embed), mine = runs["ww"], runs["rmtkit"][0]
    if "timeout" in full:
        print(
            f"WW 0.7.7 did not finish the folder in {args.ww_timeout:.0f} s: WW / rmtkit folder"
            f" > {args.ww_timeout / mine['seconds']:.2f}x (a lower bound)"
        )
        return
    theirs = None if "timeout" in embed else summary("WW 0.7.7", full, embed, args.blocks, bound)
    print(
        f"WW / rmtkit, folder: wall {full['seconds'] / mine['seconds']:.2f}x, "
        f"CPU {full['cpu'] / mine['cpu']:.2f}x (target >= 3x)"
    )
    if theirs is not None:
        print(
            f"WW / rmtkit: per block {theirs['per_block'] / ours['per_block']:.2f}x, "
            f"extrapolated 7B {theirs['whole'] / ours['whole']:.2f}x"
        )
    for key in ("alpha", "lambda_max"):
        print(f"{key} agreement: {agreement(mine, full, key)}")


if __name__ == "__main__":
    main()
