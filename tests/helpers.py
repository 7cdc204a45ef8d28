"""Builders shared by the test files: paths, weight matrices, small models, jitted fits.

Matrices and samples whose law is known (and useful outside the tests) live in
:mod:`rmtkit.testing`; this module holds the rest. It imports numpy and jax only; a framework
(torch, onnx, xarray through rmtkit.collection) is imported inside the builder that needs it,
through :func:`require` (skipped when missing, a failure under ``RMTKIT_REQUIRE_ALL_DEPS``).
"""

import contextlib
import functools
import io
import json
import warnings
from pathlib import Path

import jax
import numpy as np
from _deps import require

import rmtkit

__all__ = [
    "GOF_COLUMNS",
    "LORA_ALPHA",
    "LORA_R",
    "REF",
    "ROOT",
    "bucketed_fit_pl",
    "digits_net",
    "fuzz_settings",
    "heavy",
    "jit_with",
    "layers_of",
    "local_dask_client",
    "lora_base_model",
    "onnx_export",
    "require",
    "svd_evals",
    "trained_digits_weights",
    "trapped_dense",
    "trapped_onnx",
    "write_lora_adapter",
]

#: the repository and the stored reference data (tests/reference/README.md)
ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference"

#: the goodness-of-fit columns ``analyze(gof=True)`` must add, as the goodness-of-fit issue
#: names them (written here, not imported from rmtkit, so a renamed column fails)
GOF_COLUMNS = (
    "pl_pvalue",
    "pl_pvalue_se",
    "R_lognormal",
    "p_lognormal",
    "R_exponential",
    "p_exponential",
    "R_stretched_exp",
    "p_stretched_exp",
    "R_tpl",
    "p_tpl",
)


# --------------------------------------------------------------------------- matrices


def heavy(shape, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    """float32 weights of i.i.d. Student-t (2.5 degrees of freedom) entries times ``scale``:
    a heavy-tailed spectrum, the stand-in for a trained layer."""
    return (np.random.default_rng(seed).standard_t(2.5, size=shape) * scale).astype(np.float32)


def trapped_dense(seed: int = 0, trap: bool = True) -> np.ndarray:
    """A (100, 64) float32 Gaussian layer (entry sd 0.1) with one huge entry ``W[7, 11] = 8``:
    a correlation trap (its randomized spectrum keeps a spike)."""
    w = (np.random.default_rng(seed).standard_normal((100, 64)) * 0.1).astype(np.float32)
    if trap:
        w[7, 11] = 8.0
    return w


def svd_evals(mat) -> np.ndarray:
    """Reference spectrum: the squared singular values of a float64 copy, ascending."""
    return np.sort(np.linalg.svd(np.asarray(mat, np.float64), compute_uv=False) ** 2)


def layers_of(tree) -> dict:
    """``{path: numpy weights}`` of a weight collection, in layer order."""
    from rmtkit.collection import iter_layers

    return {p: np.asarray(w.values) for p, w in iter_layers(tree)}


# --------------------------------------------------------------------------- jitted fits


@functools.cache
def jit_with(fn, **options):
    """``jax.jit(partial(fn, **options))``, one per function and options (one compile per
    shape), shared by every test file that asks for it."""
    return jax.jit(functools.partial(fn, **options))


def bucketed_fit_pl(evals, **options):
    """``rmtkit.fit_pl`` on the spectrum padded to its bucket length (``pad_spectra``), as the
    analysis does: one compile per bucket and options."""
    padded, mask = rmtkit.pad_spectra([np.asarray(evals)])
    return jit_with(rmtkit.fit_pl, **options)(padded[0], mask[0])


# --------------------------------------------------------------------------- models


def trained_digits_weights() -> dict:
    """The trained DigitsNet weights of tests/reference/ (torch layout = canonical layout),
    ``{"conv1.weight": array, ...}``."""
    with np.load(REF / "trained_digits_weights.npz") as npz:
        return {k: npz[k] for k in npz.files}


def digits_net():
    """The trained DigitsNet as a torch module (eval mode), weights from
    :func:`trained_digits_weights` (the model WeightWatcher 0.7.7's reference rows describe)."""
    torch = require("torch")
    from torch import nn

    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.conv3 = nn.Conv2d(64, 32, 2)
            self.pool = nn.MaxPool2d(2)
            self.fc1, self.fc2, self.fc3 = (
                nn.Linear(288, 256),
                nn.Linear(256, 128),
                nn.Linear(128, 10),
            )

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            x = self.pool(torch.relu(self.conv3(x))).flatten(1)
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    model = DigitsNet().eval()
    weights = trained_digits_weights()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return model


def onnx_export(model, args: tuple, **kwargs) -> bytes:
    """A torch module exported to ONNX bytes (TorchScript exporter, opset 17); ``kwargs`` go
    to ``torch.onnx.export`` (``input_names``, ``dynamic_axes`` ...)."""
    torch = require("torch")
    require("onnx")
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, args, buf, dynamo=False, opset_version=17, **kwargs)
    return buf.getvalue()


def trapped_onnx(path: Path) -> np.ndarray:
    """Write a one-layer torch model (Linear 64 -> 100 with the weights of
    :func:`trapped_dense`, then ReLU), exported to ONNX with a dynamic batch axis, to
    ``path``; return an input batch ``x`` (5, 64) for it."""
    torch = require("torch")
    lin = torch.nn.Linear(64, 100)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(trapped_dense()))
    model = torch.nn.Sequential(lin, torch.nn.ReLU()).eval()
    path.write_bytes(
        onnx_export(
            model,
            (torch.zeros(1, 64),),
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    )
    return np.random.default_rng(3).standard_normal((5, 64)).astype(np.float32)


#: LoRA adapter of :func:`write_lora_adapter`: rank and ``lora_alpha``
LORA_R, LORA_ALPHA = 4, 16.0


def write_lora_adapter(folder: Path, *, config=None, extra=None, drop=()) -> dict:
    """A PEFT LoRA adapter folder (``adapter_model.safetensors`` + ``adapter_config.json``,
    rank :data:`LORA_R`, alpha :data:`LORA_ALPHA`) for the layers of :func:`lora_base_model`:
    a dense, a transposed dense, an embedding and a conv2d. ``config`` updates the JSON,
    ``extra`` adds tensors, ``drop`` removes some. Returns the tensors written."""
    st = require("safetensors.numpy")
    r = LORA_R
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "base_model.model.enc.q.lora_A.weight": heavy((r, 64), 10),
        "base_model.model.enc.q.lora_B.weight": heavy((100, r), 11),
        "base_model.model.head.lora_A.weight": heavy((r, 100), 12),
        "base_model.model.head.lora_B.weight": heavy((64, r), 13),
        "base_model.model.emb.lora_embedding_A": heavy((r, 300), 14),
        "base_model.model.emb.lora_embedding_B": heavy((32, r), 15),
        "base_model.model.conv.lora_A.weight": heavy((r, 3, 3, 3), 16),
        "base_model.model.conv.lora_B.weight": heavy((8, r, 1, 1), 17),
    }
    tensors.update(extra or {})
    for k in drop:
        tensors.pop(k)
    st.save_file(tensors, str(folder / "adapter_model.safetensors"))
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": LORA_ALPHA, "target_modules": ["q", "head"]}
    cfg.update(config or {})
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return tensors


def lora_base_model():
    """The base model of :func:`write_lora_adapter`'s adapter, plus one layer it leaves alone."""
    from rmtkit.collection import from_layers

    return from_layers(
        {
            "enc.q": heavy((100, 64), 20),
            "head": heavy((64, 100), 21),
            "emb": (heavy((300, 32), 22), "embedding"),
            "conv": heavy((8, 3, 3, 3), 23),
            "other": heavy((50, 50), 24),
        }
    )


# --------------------------------------------------------------------------- dask


@contextlib.contextmanager
def local_dask_client():
    """A ``distributed.Client`` of a two-worker in-process ``LocalCluster`` (threads, no
    dashboard), closed on exit."""
    distributed = require("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


# --------------------------------------------------------------------------- hypothesis


def fuzz_settings(max_examples: int):
    """hypothesis settings of the fuzz suites: a fixed number of derandomized examples, no
    example database (CI runs the same cases every time), no deadline, slow and large examples
    allowed."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
