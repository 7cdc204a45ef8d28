"""Fine-tuning deltas (docs/math.md §8): ``base=`` difference collections and LoRA / PEFT
adapter folders as collections (their analysis: tests/analysis/test_analyze_finetune.py)."""

import numpy as np
import pytest
from helpers import LORA_ALPHA as ALPHA
from helpers import LORA_R as R
from helpers import heavy, layers_of, lora_base_model, write_lora_adapter

from rmtkit.collection import from_layers, iter_layers
from rmtkit.collection.finetune import delta_collection, is_lora_adapter, lora_collection
from rmtkit.errors import CorruptModelError, UnsupportedModelError

# --------------------------------------------------------------------------- base=


def test_base_delta_is_the_difference_of_matching_layers():
    tuned = from_layers({"a": heavy((100, 64)), "b": heavy((100, 64), 1), "c": heavy((100, 64), 2)})
    base = from_layers({"a": heavy((100, 64), 3), "b": heavy((90, 64), 4)})
    tree = delta_collection(tuned, base)
    np.testing.assert_allclose(
        layers_of(tree)["a"], layers_of(tuned)["a"].astype(np.float64) - layers_of(base)["a"]
    )


# --------------------------------------------------------------------------- LoRA


def test_lora_delta_is_scaled_b_times_a(tmp_path):
    tensors = write_lora_adapter(tmp_path / "ad")
    assert is_lora_adapter(tmp_path / "ad") and is_lora_adapter(
        tmp_path / "ad" / "adapter_config.json"
    )
    assert not is_lora_adapter(tmp_path)
    got = layers_of(lora_collection(tmp_path / "ad"))
    s = ALPHA / R
    g = {k: v.astype(np.float64) for k, v in tensors.items()}
    p = "base_model.model."
    np.testing.assert_allclose(
        got["enc/q"], s * g[p + "enc.q.lora_B.weight"] @ g[p + "enc.q.lora_A.weight"], rtol=1e-12
    )
    np.testing.assert_allclose(
        got["head"], s * g[p + "head.lora_B.weight"] @ g[p + "head.lora_A.weight"], rtol=1e-12
    )
    np.testing.assert_allclose(
        got["emb"],
        s * (g[p + "emb.lora_embedding_B"] @ g[p + "emb.lora_embedding_A"]).T,
        rtol=1e-12,
    )
    conv = np.einsum(
        "or,rikl->oikl", g[p + "conv.lora_B.weight"][:, :, 0, 0], g[p + "conv.lora_A.weight"]
    )
    np.testing.assert_allclose(got["conv"], s * conv, rtol=1e-12)
    tree = lora_collection(tmp_path / "ad")
    kinds = {path: w.attrs["kind"] for path, w in iter_layers(tree)}
    assert kinds == {"conv": "conv2d", "emb": "embedding", "enc/q": "dense", "head": "dense"}
    w = dict(iter_layers(tree))["head"]
    assert w.attrs["lora_rank"] == R and w.attrs["lora_scale"] == s and w.attrs["op"] == "LoRA"


def test_lora_scaling_options(tmp_path):
    write_lora_adapter(tmp_path / "p")
    write_lora_adapter(tmp_path / "rs", config={"use_rslora": True})
    write_lora_adapter(tmp_path / "pat", config={"alpha_pattern": {"head": 2.0}})
    plain = layers_of(lora_collection(tmp_path / "p"))
    rs = layers_of(lora_collection(tmp_path / "rs"))  # alpha / sqrt(r) instead of alpha / r
    np.testing.assert_allclose(rs["head"], plain["head"] * np.sqrt(R), rtol=1e-12)
    pat = layers_of(lora_collection(tmp_path / "pat"))
    np.testing.assert_allclose(pat["head"], plain["head"] * 2.0 / ALPHA, rtol=1e-12)
    np.testing.assert_allclose(pat["enc/q"], plain["enc/q"], rtol=1e-12)


def test_lora_merged_collection_adds_the_delta_to_the_base(tmp_path):
    write_lora_adapter(tmp_path / "ad")
    base = lora_base_model()
    merged_tree = lora_collection(tmp_path / "ad", base=base, mode="merged")
    merged, plain = layers_of(merged_tree), layers_of(base)
    deltas = layers_of(lora_collection(tmp_path / "ad"))
    np.testing.assert_allclose(merged["head"], plain["head"] + deltas["head"], rtol=1e-6)
    np.testing.assert_array_equal(merged["other"], plain["other"])  # not adapted: unchanged


@pytest.mark.bad_input
def test_lora_errors(tmp_path):
    write_lora_adapter(tmp_path / "ad")
    write_lora_adapter(tmp_path / "half", drop=("base_model.model.head.lora_B.weight",))
    with pytest.raises(CorruptModelError, match="lacks its lora_A or lora_B"):
        lora_collection(tmp_path / "half")
    write_lora_adapter(tmp_path / "dora", config={"use_dora": True})
    with pytest.raises(UnsupportedModelError, match="DoRA"):
        lora_collection(tmp_path / "dora")
    write_lora_adapter(tmp_path / "ia3", config={"peft_type": "IA3"})
    with pytest.raises(UnsupportedModelError, match="LoRA only"):
        lora_collection(tmp_path / "ia3")
    small = from_layers({"enc.q": heavy((90, 64))})
    with pytest.raises(CorruptModelError, match="shape"):
        lora_collection(tmp_path / "ad", base=small)
    (tmp_path / "nofile").mkdir()
    (tmp_path / "nofile" / "adapter_config.json").write_text("{}")
    with pytest.raises(CorruptModelError, match="adapter_model"):
        lora_collection(tmp_path / "nofile")
