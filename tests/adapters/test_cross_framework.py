"""One architecture in PyTorch, its torch.onnx export, and a Keras rebuild with the same weights:
the three collections hold the same matrices, in the same canonical orientation and order."""

import jax
import numpy as np
import pytest
from helpers import onnx_export, require

torch = require("torch")
onnx = require("onnx")
keras = require("keras")
from torch import nn  # noqa: E402

from rmtkit.adapters import keras as akeras  # noqa: E402
from rmtkit.adapters import onnx as aonnx  # noqa: E402
from rmtkit.adapters import torch as atorch  # noqa: E402
from rmtkit.collection import iter_layers  # noqa: E402

#: one torch model, its ONNX export and a Keras rebuild: tens of seconds to build
pytestmark = pytest.mark.slow

DIM, HEADS = 16, 2


class TinyViT(nn.Module):
    """Conv stem, token embedding, one attention block with an MLP, a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.embed = nn.Linear(8, DIM)
        self.q, self.k, self.v = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.o = nn.Linear(DIM, DIM)
        self.ff1, self.ff2 = nn.Linear(DIM, 32), nn.Linear(32, DIM)
        self.head = nn.Linear(DIM, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(2).transpose(1, 2)  # (B, 36, 8)
        h = self.embed(h)
        b, t, _ = h.shape
        split = lambda z: z.view(b, t, HEADS, DIM // HEADS).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / (DIM // HEADS) ** 0.5, dim=-1)
        h = h + self.o((att @ v).transpose(1, 2).reshape(b, t, DIM))
        h = h + self.ff2(torch.relu(self.ff1(h)))
        return self.head(h.mean(1))


def keras_twin(model: TinyViT):
    L = keras.layers
    p = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    inp = keras.Input((6, 6, 3))
    conv = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")
    h = L.Reshape((36, 8))(conv(inp))
    embed = L.Dense(DIM, name="embed")
    h = embed(h)
    mha = L.MultiHeadAttention(HEADS, DIM // HEADS, name="attn")
    h = L.Add()([h, mha(h, h)])
    ff1, ff2 = L.Dense(32, activation="relu", name="ff1"), L.Dense(DIM, name="ff2")
    h = L.Add()([h, ff2(ff1(h))])
    head = L.Dense(5, name="head")
    out = head(L.GlobalAveragePooling1D()(h))
    km = keras.Model(inp, out)
    conv.set_weights([p["conv.weight"].transpose(2, 3, 1, 0), p["conv.bias"]])
    for layer, name in ((embed, "embed"), (ff1, "ff1"), (ff2, "ff2"), (head, "head")):
        layer.set_weights([p[f"{name}.weight"].T, p[f"{name}.bias"]])
    hd = DIM // HEADS
    mha.set_weights(
        [
            p["q.weight"].T.reshape(DIM, HEADS, hd),
            p["q.bias"].reshape(HEADS, hd),
            p["k.weight"].T.reshape(DIM, HEADS, hd),
            p["k.bias"].reshape(HEADS, hd),
            p["v.weight"].T.reshape(DIM, HEADS, hd),
            p["v.bias"].reshape(HEADS, hd),
            p["o.weight"].T.reshape(HEADS, hd, DIM),
            p["o.bias"],
        ]
    )
    return km


def export_onnx(model, x):
    return onnx.load_from_string(onnx_export(model, (x,)))


def spectra(tree):
    out = []
    for _, w in iter_layers(tree):
        a = np.asarray(w.values, np.float64)
        slices = a.reshape(a.shape[0], a.shape[1], -1).transpose(2, 0, 1)  # per kernel position
        out.append(np.sort(np.linalg.svd(slices, compute_uv=False).ravel() ** 2))
    return out


@pytest.fixture(scope="module")
def three():
    torch.manual_seed(0)
    model = TinyViT().eval()
    x = torch.randn(2, 3, 6, 6)
    with jax.numpy_rank_promotion("allow"):  # Keras broadcasts biases; conftest forbids it
        km = keras_twin(model)
        out = np.asarray(km(x.numpy().transpose(0, 2, 3, 1)))
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)  # the twin is the same function
    return (atorch.from_torch(model), aonnx.from_onnx(export_onnx(model, x)), akeras.from_keras(km))


def test_same_kinds_shapes_and_order(three):
    described = [
        [(w.attrs["kind"], w.shape, w.attrs["layer_id"]) for _, w in iter_layers(t)] for t in three
    ]
    assert described[0] == described[1] == described[2]
    assert len(described[0]) == 9


def test_same_matrices_and_spectra(three):
    t_torch, t_onnx, t_keras = three
    for other in (t_onnx, t_keras):
        for (_, a), (_, b) in zip(iter_layers(t_torch), iter_layers(other)):
            np.testing.assert_allclose(b.values, a.values, rtol=1e-6, atol=1e-7)
    s0 = spectra(t_torch)
    for other in (t_onnx, t_keras):
        for a, b in zip(s0, spectra(other)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * a.max())


def test_torch_paths(three):
    assert [p for p, _ in iter_layers(three[0])] == [
        "conv",
        "embed",
        "q",
        "k",
        "v",
        "o",
        "ff1",
        "ff2",
        "head",
    ]
    assert [p for p, _ in iter_layers(three[2])][2:6] == [
        "attn/query",
        "attn/key",
        "attn/value",
        "attn/attention_output",
    ]
