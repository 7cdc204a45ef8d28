"""safetensors adapter: files, folders, sharded indexes, laziness, bad headers."""

import importlib.util
import json
import struct

import numpy as np
import pytest
from helpers import ROOT, require

st_numpy = require("safetensors.numpy")

from rmtkit.adapters import safetensors as ast  # noqa: E402
from rmtkit.collection import iter_layers, validate_collection  # noqa: E402
from rmtkit.errors import CorruptModelError, MissingDataError, UnsupportedModelError  # noqa: E402

RNG = np.random.default_rng(0)
TENSORS = {
    "model.layers.10.mlp.weight": RNG.normal(size=(6, 4)).astype(np.float32),
    "model.layers.2.mlp.weight": RNG.normal(size=(6, 4)).astype(np.float32),
    "model.layers.2.mlp.bias": np.zeros(6, np.float32),
    "model.embed_tokens.weight": RNG.normal(size=(20, 4)).astype(np.float16),
    "model.conv.weight": RNG.normal(size=(5, 3, 2, 2)).astype(np.float32),
    "model.attn.in_proj_weight": RNG.normal(size=(12, 4)).astype(np.float32),
    "position_ids": np.arange(8, dtype=np.int64),
}


def test_single_file(tmp_path):
    path = tmp_path / "m.safetensors"
    st_numpy.save_file(TENSORS, str(path))
    tree = validate_collection(ast.load(path))
    got = {p: w for p, w in iter_layers(tree)}
    assert list(got) == [
        "model/attn/q",
        "model/attn/k",
        "model/attn/v",
        "model/conv",
        "model/embed_tokens",
        "model/layers/2/mlp",
        "model/layers/10/mlp",
    ]
    assert got["model/embed_tokens"].attrs["kind"] == "embedding"
    assert got["model/embed_tokens"].attrs["dtype"] == "float16"
    np.testing.assert_array_equal(
        got["model/layers/10/mlp"].values, TENSORS["model.layers.10.mlp.weight"]
    )
    np.testing.assert_array_equal(
        got["model/attn/v"].values, TENSORS["model.attn.in_proj_weight"][8:]
    )


def test_bfloat16(tmp_path):
    import ml_dtypes

    w = RNG.normal(size=(4, 3)).astype(ml_dtypes.bfloat16)
    path = tmp_path / "b.safetensors"
    st_numpy.save_file({"fc.weight": w}, str(path))
    ((_, got),) = iter_layers(ast.load(path))
    assert got.attrs["dtype"] == "bfloat16"
    np.testing.assert_array_equal(got.values, w.astype(np.float32))


def test_sharded_folder_and_plain_folder(tmp_path):
    names = sorted(TENSORS)
    shards = {"a.safetensors": names[:3], "b.safetensors": names[3:]}
    for shard, keys in shards.items():
        st_numpy.save_file({k: TENSORS[k] for k in keys}, str(tmp_path / shard))
    one = tmp_path / "one.safetensors"
    st_numpy.save_file(TENSORS, str(one))
    single = [(p, w.values) for p, w in iter_layers(ast.load(one))]
    one.unlink()
    plain = [(p, w.values) for p, w in iter_layers(ast.load(tmp_path))]
    index = {"weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded = [(p, w.values) for p, w in iter_layers(ast.load(tmp_path))]
    assert [p for p, _ in sharded] == [p for p, _ in single]
    for (_, a), (_, b) in zip(single, sharded):
        np.testing.assert_array_equal(a, b)
    assert sorted(p for p, _ in plain) == sorted(p for p, _ in single)
    (tmp_path / "b.safetensors").unlink()
    with pytest.raises(MissingDataError, match="b.safetensors"):
        ast.load(tmp_path)


@pytest.mark.bad_input
def test_corrupt_headers(tmp_path):
    path = tmp_path / "bad.safetensors"
    st_numpy.save_file(TENSORS, str(path))
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    bad_json = tmp_path / "json.safetensors"
    bad_json.write_bytes(data[:8] + b"{" * n + data[8 + n :])
    with pytest.raises(CorruptModelError, match="json.safetensors.*invalid JSON"):
        ast.load(bad_json)
    huge = tmp_path / "len.safetensors"
    huge.write_bytes(struct.pack("<Q", 10**12) + data[8:])
    with pytest.raises(CorruptModelError, match="len.safetensors.*header"):
        ast.load(huge)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: 8 + n + 16])
    with pytest.raises(CorruptModelError, match="cut.safetensors.*tensor"):
        ast.load(cut)
    empty = tmp_path / "norm.safetensors"
    st_numpy.save_file({"ln.weight": np.ones(4, np.float32)}, str(empty))
    with pytest.raises(UnsupportedModelError, match="norm.safetensors.*no analyzable"):
        ast.load(empty)


def test_nan_passes(tmp_path):
    w = np.ones((4, 4), np.float32)
    w[1, 2] = np.nan
    path = tmp_path / "nan.safetensors"
    st_numpy.save_file({"fc.weight": w}, str(path))
    ((_, got),) = iter_layers(ast.load(path))
    assert np.isnan(got.values[1, 2])


@pytest.mark.slow
def test_sharded_folder_streams_one_tensor_at_a_time(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "adapters_memory", ROOT / "benchmarks" / "adapters_memory.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    largest = bench.write_folder(tmp_path, 64 * 2**20, dim=1024, per_shard=4)  # 8 MiB tensors
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    n, growth, *_ = bench.measure(tmp_path)  # (layers, RSS growth, peak RSS, seconds)
    assert n == 8
    assert growth < 3 * largest + 8 * 2**20 < size / 2, (growth, size)
