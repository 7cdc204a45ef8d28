"""analyze of fine-tuning deltas (docs/math.md §8): ``base=`` and LoRA / PEFT adapter folders
(the collections themselves: tests/collection/test_finetune.py)."""

import numpy as np
import pytest
import xarray as xr
from helpers import LORA_R as R
from helpers import heavy, lora_base_model, write_lora_adapter

from rmtkit.analysis import analyze, describe
from rmtkit.collection import from_layers
from rmtkit.errors import InvalidArgumentError

# --------------------------------------------------------------------------- base=


def test_base_delta_matches_the_explicit_difference():
    base = {"enc.fc": heavy((100, 64)), "head": heavy((64, 100), 1)}
    tuned = {k: v + heavy(v.shape, 7, 0.05) for k, v in base.items()}
    d = analyze(from_layers(tuned), base=from_layers(base), progress=False)
    ref = analyze(
        from_layers({k: tuned[k].astype(np.float64) - base[k] for k in base}), progress=False
    )
    xr.testing.assert_allclose(d.drop_attrs(), ref.drop_attrs(), rtol=1e-10)
    assert d.attrs["base"] == "DataTree"


def test_base_mismatches_are_warning_rows():
    tuned = from_layers({"a": heavy((100, 64)), "b": heavy((100, 64), 1), "c": heavy((100, 64), 2)})
    base = from_layers({"a": heavy((100, 64), 3), "b": heavy((90, 64), 4)})
    d = describe(tuned, base=base)
    assert list(d.warning.values) == ["", "base-shape-mismatch", "no-base-layer"]
    full = analyze(tuned, base=base, progress=False)
    assert list(full.warning.values[1:]) == ["base-shape-mismatch", "no-base-layer"]
    assert np.isnan(full.alpha.values[1:]).all() and np.isfinite(full.alpha.values[0])


# --------------------------------------------------------------------------- LoRA


def test_lora_analyze_delta_and_merged(tmp_path):
    write_lora_adapter(tmp_path / "ad")
    base = lora_base_model()
    delta = analyze(tmp_path / "ad", base=base, min_evals=4, progress=False)
    assert list(delta["name"].values) == ["enc/q", "head", "emb", "conv"]  # base order and ids
    assert list(delta.layer_id.values) == [0, 1, 2, 3]
    assert (delta.matrix_rank.values[:3] == R).all()  # rank-r updates (conv: per slice)
    assert delta.attrs["lora"] == "delta"
    m = analyze(tmp_path / "ad", base=base, lora="merged", progress=False)
    assert m.sizes["layer"] == 5 and m.attrs["lora"] == "merged"


@pytest.mark.bad_input
def test_lora_options_are_checked(tmp_path):
    write_lora_adapter(tmp_path / "ad")
    with pytest.raises(InvalidArgumentError, match="needs the base model"):
        analyze(tmp_path / "ad", lora="merged", progress=False)
    with pytest.raises(InvalidArgumentError, match="`lora`"):
        analyze(tmp_path / "ad", lora="both", progress=False)
