"""JAX / Flax-style pytrees and plain dicts of arrays."""

import jax.numpy as jnp
import numpy as np
import pytest

from rmtkit.adapters import jax as ajax
from rmtkit.collection import iter_layers, validate_collection
from rmtkit.errors import UnsupportedModelError

RNG = np.random.default_rng(0)


def flax_like():
    return {
        "params": {
            "Embed_0": {"embedding": jnp.asarray(RNG.normal(size=(30, 8)), jnp.float32)},
            "Conv_0": {"kernel": RNG.normal(size=(3, 3, 2, 5)), "bias": np.zeros(5)},
            "Conv_1": {"kernel": RNG.normal(size=(4, 5, 6))},
            "attn": {
                "query": {"kernel": RNG.normal(size=(8, 2, 4))},
                "key": {"kernel": RNG.normal(size=(8, 2, 4))},
                "value": {"kernel": RNG.normal(size=(8, 2, 4))},
                "out": {"kernel": RNG.normal(size=(2, 4, 8))},
            },
            "Dense_10": {"kernel": jnp.asarray(RNG.normal(size=(8, 3)), jnp.bfloat16)},
            "Dense_2": {"kernel": RNG.normal(size=(8, 3))},
            "LayerNorm_0": {"scale": np.ones(8)},
        }
    }


def test_layout_rule_and_insertion_order():
    p = flax_like()
    tree = validate_collection(ajax.from_pytree(p))
    got = {path: w for path, w in iter_layers(tree)}
    assert list(got) == [
        "Embed_0",
        "Conv_0",
        "Conv_1",
        "attn/query",
        "attn/key",
        "attn/value",
        "attn/out",
        "Dense_10",
        "Dense_2",
    ]
    q = p["params"]["attn"]["query"]["kernel"]
    np.testing.assert_allclose(got["attn/query"].values, q.reshape(8, 8).T)
    o = p["params"]["attn"]["out"]["kernel"]
    np.testing.assert_allclose(got["attn/out"].values, o.reshape(8, 8).T)
    np.testing.assert_allclose(
        got["Conv_0"].values, p["params"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
    )
    np.testing.assert_allclose(
        got["Conv_1"].values, p["params"]["Conv_1"]["kernel"].transpose(2, 1, 0)
    )
    assert got["Conv_1"].attrs["kind"] == "conv1d"
    assert got["Dense_10"].attrs["dtype"] == "bfloat16" and got["Dense_10"].dtype == np.float32
    assert got["Embed_0"].attrs["kind"] == "embedding"


def test_torch_style_names_in_a_plain_dict():
    d = {
        "fc1.weight": RNG.normal(size=(6, 4)),
        "fc1.bias": np.zeros(6),
        "blocks": [{"w": RNG.normal(size=(4, 4))}, {"w": RNG.normal(size=(4, 2))}],
    }
    got = {p: w for p, w in iter_layers(ajax.from_pytree(d))}
    assert list(got) == ["fc1", "blocks/0", "blocks/1"]
    np.testing.assert_array_equal(got["fc1"].values, d["fc1.weight"])
    assert got["blocks/1"].shape == (2, 4)  # haiku "w" is (in, out)


def test_npz(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, **{"enc/fc/kernel": RNG.normal(size=(4, 3)), "enc/fc/bias": np.zeros(3)})
    ((p, w),) = iter_layers(ajax.load(path))
    assert p == "enc/fc" and w.shape == (3, 4)


@pytest.mark.bad_input
def test_no_layers():
    with pytest.raises(UnsupportedModelError, match="no analyzable layer"):
        ajax.from_pytree({"ln": {"scale": np.ones(3)}})
    with pytest.raises(UnsupportedModelError, match="no array leaves"):
        ajax.from_pytree({"a": "b"})
