"""Keras 3 adapter (JAX backend): layer layouts, nesting, .keras files."""

import jax
import numpy as np
import pytest
from helpers import require

keras = require("keras")

from rmtkit.adapters import keras as akeras  # noqa: E402
from rmtkit.collection import iter_layers, validate_collection  # noqa: E402
from rmtkit.errors import CorruptModelError, UnsupportedModelError  # noqa: E402

L = keras.layers


@pytest.fixture(autouse=True)
def _keras_broadcasts():
    with jax.numpy_rank_promotion("allow"):  # Keras adds biases by rank promotion
        yield


def build():
    keras.utils.set_random_seed(0)
    block = keras.Sequential([L.Dense(8, name="inner1"), L.Dense(8, name="inner2")], name="block")
    ids = keras.Input((5,), dtype="int32")
    img = keras.Input((6, 6, 3))
    seq = keras.Input((7, 4))
    e = L.Embedding(30, 8, name="emb")(ids)
    a = L.MultiHeadAttention(2, 4, name="mha")(e, e)
    c2 = L.Conv2D(5, 3, name="c2")(img)
    dw = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(img)
    c1 = L.Conv1D(6, 3, name="c1")(seq)
    ed = L.EinsumDense("abc,cd->abd", output_shape=(5, 9), name="ed")(a)
    t2 = L.Conv2DTranspose(4, 2, name="t2")(c2)
    h = block(L.Flatten()(ed))
    out = L.Concatenate()([h, L.Flatten()(c1), L.Flatten()(t2), L.Flatten()(dw)])
    return keras.Model([ids, img, seq], out, name="zoo")


@pytest.mark.slow
def test_layouts_and_nesting():
    model = build()
    tree = validate_collection(akeras.from_keras(model))
    got = {p: w for p, w in iter_layers(tree)}
    assert set(got) == {
        "emb",
        "mha/query",
        "mha/key",
        "mha/value",
        "mha/attention_output",
        "c2",
        "dw",
        "c1",
        "ed",
        "t2",
        "block/inner1",
        "block/inner2",
    }
    layer = {lyr.name: lyr for lyr in model.layers}

    def k(name, attr="kernel"):
        return np.asarray(getattr(layer[name], attr))

    np.testing.assert_array_equal(got["emb"].values, k("emb", "embeddings"))
    mha = layer["mha"]
    q = np.asarray(mha._query_dense.kernel)  # (dim, heads, head_dim)
    np.testing.assert_array_equal(got["mha/query"].values, q.reshape(8, 8).T)
    o = np.asarray(mha._output_dense.kernel)  # (heads, head_dim, dim)
    np.testing.assert_array_equal(got["mha/attention_output"].values, o.reshape(8, 8).T)
    np.testing.assert_array_equal(got["c2"].values, k("c2").transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(got["c1"].values, k("c1").transpose(2, 1, 0))
    np.testing.assert_array_equal(got["t2"].values, k("t2").transpose(2, 3, 0, 1))
    assert got["dw"].shape == (6, 1, 3, 3) and got["dw"].attrs["groups"] == 3
    np.testing.assert_array_equal(got["dw"].values[1, 0], k("dw")[:, :, 0, 1])
    np.testing.assert_array_equal(got["ed"].values, k("ed").T)
    inner = np.asarray(layer["block"].layers[0].kernel)
    np.testing.assert_array_equal(got["block/inner1"].values, inner.T)
    ids = [p for p, _ in iter_layers(tree)]
    assert ids.index("mha/query") < ids.index("mha/attention_output") < ids.index("ed")


@pytest.mark.slow
@pytest.mark.filterwarnings(  # Keras's own saving code, with numpy 2
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_keras_file_round_trip(tmp_path):
    model = build()
    path = tmp_path / "zoo.keras"
    model.save(path)
    a = list(iter_layers(akeras.from_keras(model)))
    b = list(iter_layers(akeras.load(path)))
    assert [p for p, _ in a] == [p for p, _ in b]
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x.values, y.values)


@pytest.mark.bad_input
def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CorruptModelError, match="bad.keras"):
        akeras.load(bad)
    with pytest.raises(UnsupportedModelError, match="not built"):
        akeras.from_keras(keras.Sequential([L.Dense(3)]))
    norm_only = keras.Sequential([keras.Input((4,)), L.LayerNormalization()])
    with pytest.raises(UnsupportedModelError, match="no analyzable layer"):
        akeras.from_keras(norm_only)
