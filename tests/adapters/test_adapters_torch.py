"""PyTorch adapter: modules, state dicts, files, write-back."""

import numpy as np
import pytest
from helpers import require

torch = require("torch")
from torch import nn  # noqa: E402

from rmtkit.adapters import torch as atorch  # noqa: E402
from rmtkit.collection import iter_layers, validate_collection  # noqa: E402
from rmtkit.errors import CorruptModelError, UnsupportedModelError  # noqa: E402


class Conv1D(nn.Module):
    """Shape of Hugging Face GPT-2's Conv1D: weight stored (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


def zoo():
    torch.manual_seed(0)
    m = nn.Module()
    m.emb = nn.Embedding(10, 8)
    m.fc = nn.Linear(8, 6)
    m.c1 = nn.Conv1d(3, 4, 5)
    m.c2 = nn.Conv2d(3, 4, 3, groups=1)
    m.ct = nn.ConvTranspose2d(4, 6, 2, groups=2)
    m.gpt = Conv1D(5, 7)
    m.attn = nn.MultiheadAttention(8, 2)
    m.norm = nn.LayerNorm(8)
    m.head = nn.Linear(8, 10, bias=False)
    m.head.weight = m.emb.weight  # tied: one layer
    return m


def test_module_layouts():
    m = zoo()
    tree = validate_collection(atorch.from_torch(m))
    got = {p: w for p, w in iter_layers(tree)}
    assert list(got) == [
        "emb",
        "fc",
        "c1",
        "c2",
        "ct",
        "gpt",
        "attn/q",
        "attn/k",
        "attn/v",
        "attn/out_proj",
    ]
    assert got["emb"].dims == ("vocab", "dim")
    assert got["c1"].dims == ("fan_out", "fan_in", "k")
    np.testing.assert_array_equal(got["ct"].values, m.ct.weight.detach().numpy().swapaxes(0, 1))
    assert got["ct"].attrs["groups"] == 2
    np.testing.assert_array_equal(got["gpt"].values, m.gpt.weight.detach().numpy().T)
    w = m.attn.in_proj_weight.detach().numpy()
    for i, part in enumerate("qkv"):
        np.testing.assert_array_equal(got[f"attn/{part}"].values, w[8 * i : 8 * (i + 1)])
    assert got["attn/k"].attrs["source_slice"] == "8:16"


def test_execution_order_from_example_inputs():
    class Rev(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Linear(4, 4)
            self.a = nn.Linear(3, 4)

        def forward(self, x):
            return self.b(self.a(x))

    tree = atorch.from_torch(Rev(), example_inputs=(torch.randn(2, 3),))
    assert [p for p, _ in iter_layers(tree)] == ["a", "b"]
    assert [p for p, _ in iter_layers(atorch.from_torch(Rev()))] == ["b", "a"]


def test_bf16_widened_and_dtype_recorded():
    m = nn.Linear(4, 3).to(torch.bfloat16)
    ((_, w),) = iter_layers(atorch.from_torch(m))
    assert w.dtype == np.float32 and w.attrs["dtype"] == "bfloat16"


def test_state_dict_and_file_agree(tmp_path):
    m = zoo()
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith(("ct.", "head."))}
    tree = atorch.from_state_dict(sd)
    got = {p: w for p, w in iter_layers(tree)}
    assert got["emb"].attrs["kind"] == "embedding"
    assert got["gpt"].attrs["op"] == "Linear"  # "gpt" is not a GPT-2 name: taken as (out, in)
    assert [p for p in got if p.startswith("attn")] == [
        "attn/q",
        "attn/k",
        "attn/v",
        "attn/out_proj",
    ]
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    tree2 = atorch.load(path)
    for (p1, a), (p2, b) in zip(iter_layers(tree), iter_layers(tree2)):
        assert p1 == p2
        np.testing.assert_array_equal(a.values, b.values)


def test_gpt2_names_transposed():
    sd = {
        "transformer.h.0.attn.c_attn.weight": torch.randn(8, 24),
        "transformer.h.0.attn.c_attn.bias": torch.randn(24),
        "transformer.wte.weight": torch.randn(50, 8),
    }
    got = {p: w for p, w in iter_layers(atorch.from_state_dict(sd))}
    assert got["transformer/h/0/attn/c_attn"].shape == (24, 8)
    assert got["transformer/wte"].attrs["kind"] == "embedding"


def test_assign_round_trip():
    src, dst = zoo(), zoo()
    with torch.no_grad():
        for p in src.parameters():
            p.mul_(-2.0)
    atorch.assign(dst, atorch.from_torch(src))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        if "weight" in k and not k.startswith("norm"):  # norms are not layers
            assert torch.equal(a, b), k


@pytest.mark.bad_input
def test_bad_files(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(zoo().state_dict(), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptModelError, match="cut.pt"):
        atorch.load(cut)
    empty = tmp_path / "norms.pt"
    torch.save({"ln.weight": torch.ones(4), "ln.bias": torch.zeros(4)}, empty)
    with pytest.raises(UnsupportedModelError, match="norms.pt.*no analyzable layer"):
        atorch.load(empty)
    with pytest.raises(UnsupportedModelError, match="nn.Module"):
        atorch.from_torch({"a": 1})


def test_nan_passes():
    m = nn.Linear(4, 4)
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    ((_, w),) = iter_layers(atorch.from_torch(m))
    assert np.isnan(w.values[0, 0])
