"""Fine-tuning deltas (docs/math.md §8): ``base=`` differences and LoRA / PEFT adapter folders."""

import json

import numpy as np
import pytest
import xarray as xr
from _deps import require

from rmtkit.analysis import analyze, describe
from rmtkit.collection import from_layers, iter_layers
from rmtkit.collection.finetune import delta_collection, is_lora_adapter, lora_collection
from rmtkit.errors import CorruptModelError, InvalidArgumentError, UnsupportedModelError


def rng(seed=0):
    return np.random.default_rng(seed)


def t(shape, seed=0, scale=0.1):
    return (rng(seed).standard_t(2.5, size=shape) * scale).astype(np.float32)


def layers_of(tree):
    return {p: np.asarray(w.values) for p, w in iter_layers(tree)}


# --------------------------------------------------------------------------- base=


def test_base_delta_matches_the_explicit_difference():
    base = {"enc.fc": t((100, 64)), "head": t((64, 100), 1)}
    tuned = {k: v + t(v.shape, 7, 0.05) for k, v in base.items()}
    d = analyze(from_layers(tuned), base=from_layers(base), progress=False)
    ref = analyze(
        from_layers({k: tuned[k].astype(np.float64) - base[k] for k in base}), progress=False
    )
    xr.testing.assert_allclose(d.drop_attrs(), ref.drop_attrs(), rtol=1e-10)
    assert d.attrs["base"] == "DataTree"


def test_base_mismatches_are_warning_rows():
    tuned = from_layers({"a": t((100, 64)), "b": t((100, 64), 1), "c": t((100, 64), 2)})
    base = from_layers({"a": t((100, 64), 3), "b": t((90, 64), 4)})
    tree = delta_collection(tuned, base)
    np.testing.assert_allclose(
        layers_of(tree)["a"], layers_of(tuned)["a"].astype(np.float64) - layers_of(base)["a"]
    )
    d = describe(tuned, base=base)
    assert list(d.warning.values) == ["", "base-shape-mismatch", "no-base-layer"]
    full = analyze(tuned, base=base, progress=False)
    assert list(full.warning.values[1:]) == ["base-shape-mismatch", "no-base-layer"]
    assert np.isnan(full.alpha.values[1:]).all() and np.isfinite(full.alpha.values[0])


# --------------------------------------------------------------------------- LoRA


R, ALPHA = 4, 16.0


def write_adapter(folder, *, config=None, extra=None, drop=()):
    st = require("safetensors.numpy")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "base_model.model.enc.q.lora_A.weight": t((R, 64), 10),
        "base_model.model.enc.q.lora_B.weight": t((100, R), 11),
        "base_model.model.head.lora_A.weight": t((R, 100), 12),
        "base_model.model.head.lora_B.weight": t((64, R), 13),
        "base_model.model.emb.lora_embedding_A": t((R, 300), 14),
        "base_model.model.emb.lora_embedding_B": t((32, R), 15),
        "base_model.model.conv.lora_A.weight": t((R, 3, 3, 3), 16),
        "base_model.model.conv.lora_B.weight": t((8, R, 1, 1), 17),
    }
    tensors.update(extra or {})
    for k in drop:
        tensors.pop(k)
    st.save_file(tensors, str(folder / "adapter_model.safetensors"))
    cfg = {"peft_type": "LORA", "r": R, "lora_alpha": ALPHA, "target_modules": ["q", "head"]}
    cfg.update(config or {})
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return tensors


def base_model():
    return from_layers(
        {
            "enc.q": t((100, 64), 20),
            "head": t((64, 100), 21),
            "emb": (t((300, 32), 22), "embedding"),
            "conv": t((8, 3, 3, 3), 23),
            "other": t((50, 50), 24),
        }
    )


def test_lora_delta_is_scaled_b_times_a(tmp_path):
    tensors = write_adapter(tmp_path / "ad")
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
    write_adapter(tmp_path / "p")
    write_adapter(tmp_path / "rs", config={"use_rslora": True})
    write_adapter(tmp_path / "pat", config={"alpha_pattern": {"head": 2.0}})
    plain = layers_of(lora_collection(tmp_path / "p"))
    rs = layers_of(lora_collection(tmp_path / "rs"))  # alpha / sqrt(r) instead of alpha / r
    np.testing.assert_allclose(rs["head"], plain["head"] * np.sqrt(R), rtol=1e-12)
    pat = layers_of(lora_collection(tmp_path / "pat"))
    np.testing.assert_allclose(pat["head"], plain["head"] * 2.0 / ALPHA, rtol=1e-12)
    np.testing.assert_allclose(pat["enc/q"], plain["enc/q"], rtol=1e-12)


def test_lora_analyze_delta_and_merged(tmp_path):
    write_adapter(tmp_path / "ad")
    base = base_model()
    delta = analyze(tmp_path / "ad", base=base, min_evals=4, progress=False)
    assert list(delta["name"].values) == ["enc/q", "head", "emb", "conv"]  # base order and ids
    assert list(delta.layer_id.values) == [0, 1, 2, 3]
    assert (delta.matrix_rank.values[:3] == R).all()  # rank-r updates (conv: per slice)
    assert delta.attrs["lora"] == "delta"
    merged_tree = lora_collection(tmp_path / "ad", base=base, mode="merged")
    merged, plain = layers_of(merged_tree), layers_of(base)
    deltas = layers_of(lora_collection(tmp_path / "ad"))
    np.testing.assert_allclose(merged["head"], plain["head"] + deltas["head"], rtol=1e-6)
    np.testing.assert_array_equal(merged["other"], plain["other"])  # not adapted: unchanged
    m = analyze(tmp_path / "ad", base=base, lora="merged", progress=False)
    assert m.sizes["layer"] == 5 and m.attrs["lora"] == "merged"


@pytest.mark.bad_input
def test_lora_errors(tmp_path):
    write_adapter(tmp_path / "ad")
    with pytest.raises(InvalidArgumentError, match="needs the base model"):
        analyze(tmp_path / "ad", lora="merged", progress=False)
    with pytest.raises(InvalidArgumentError, match="`lora`"):
        analyze(tmp_path / "ad", lora="both", progress=False)
    write_adapter(tmp_path / "half", drop=("base_model.model.head.lora_B.weight",))
    with pytest.raises(CorruptModelError, match="lacks its lora_A or lora_B"):
        lora_collection(tmp_path / "half")
    write_adapter(tmp_path / "dora", config={"use_dora": True})
    with pytest.raises(UnsupportedModelError, match="DoRA"):
        lora_collection(tmp_path / "dora")
    write_adapter(tmp_path / "ia3", config={"peft_type": "IA3"})
    with pytest.raises(UnsupportedModelError, match="LoRA only"):
        lora_collection(tmp_path / "ia3")
    small = from_layers({"enc.q": t((90, 64))})
    with pytest.raises(CorruptModelError, match="shape"):
        lora_collection(tmp_path / "ad", base=small)
    (tmp_path / "nofile").mkdir()
    (tmp_path / "nofile" / "adapter_config.json").write_text("{}")
    with pytest.raises(CorruptModelError, match="adapter_model"):
        lora_collection(tmp_path / "nofile")
