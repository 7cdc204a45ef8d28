"""Generate WeightWatcher 0.7.7 reference outputs for the facade's options (issue 15).

Runs ONLY in the scratch environment of make_ww_reference.py (weightwatcher==0.7.7,
torch==2.13.0 CPU, scikit-learn); WeightWatcher is never a dependency of rmtkit:

    /tmp/wwenv/bin/python tests/reference/make_ww_options_reference.py     # ~30 s

Deterministic: the model is the trained
DigitsNet of trained_digits_weights.npz (no training here), the second model of `distances` is
a closed-form perturbation of it, the fingers matrix and the LoRA factors are fixed
numpy.random.default_rng draws, WeightWatcher's own unseeded draws (shuffles, randint, the
ARPACK start vector of its truncated SVDs) are pinned with numpy.random.seed right before each
call (the 0/1 masks of intra=True are recorded as WeightWatcher drew them), and BLAS runs on
one thread. A second run reproduces ww077_signature.json, ww077_options.npz and every number of
ww077_options.json bit for bit, except the rows of stacked=True and of the LoraNet: those agree
to 1e-14 only (OpenBLAS's results on WeightWatcher's temporaries depend on their memory
alignment; the same call differs in its last bits even within one process). The tests compare
at 1e-6. Writes, next to this file:

    ww077_signature.json   the public signature of WeightWatcher 0.7.7 (inspect.signature of
                           __init__, analyze, describe, get_details, get_summary, get_ESD,
                           get_Weights, distances, SVDSharpness, SVDSmoothing)
    ww077_options.json     details rows / summaries / distances / smoothing results per option
    ww077_options.npz      arrays those need: intra masks, the fingers matrix, the LoRA
                           factors, get_ESD outputs, the singular values (descending, per
                           kernel slice) of the smoothed layers
"""

import contextlib
import inspect
import io
import json
import logging
import os
import warnings

import numpy as np

os.environ.setdefault("PYTHONHASHSEED", "0")
# one BLAS thread: sums in a fixed order, so a second run reproduces every bit
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import weightwatcher as ww  # noqa: E402

logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
HERE = os.path.dirname(os.path.abspath(__file__))
assert ww.__version__ == "0.7.7", ww.__version__

METHODS = [
    "__init__",
    "analyze",
    "describe",
    "get_details",
    "get_summary",
    "get_ESD",
    "get_Weights",
    "distances",
    "SVDSharpness",
    "SVDSmoothing",
]


def to_py(x):
    """Recursively convert numpy / pandas scalars to JSON-able python types."""
    if isinstance(x, dict):
        return {str(k): to_py(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_py(v) for v in x]
    if isinstance(x, np.ndarray):
        return [to_py(v) for v in x.tolist()]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    if x is None or isinstance(x, (int, str)):
        return x
    return str(x)


def quiet(fn, *a, **k):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        return fn(*a, **k)


class DigitsNet(nn.Module):
    """The model of make_ww_reference.py (weights from trained_digits_weights.npz)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 32, 2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(288, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)
        self.act = nn.ReLU()


def digits(state):
    model = DigitsNet()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return model


class FingerNet(nn.Module):
    """One Linear layer whose spectrum has two outlying top eigenvalues ("fingers")."""

    def __init__(self, w):
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(w))


def finger_matrix():
    """Student-t entries 200 x 100, df drawn uniform in [2, 6) (default_rng(15): df = 4.77),
    float32: WeightWatcher's first fit gives alpha 11.2, fix_fingers='clip_xmax' 4.1."""
    rng = np.random.default_rng(15)
    df = rng.uniform(2.0, 6.0)
    return rng.standard_t(df, size=(200, 100)).astype(np.float32)


class LoraNet(nn.Module):
    """A base Linear followed by its LoRA factors, in WeightWatcher's peft layer order."""

    def __init__(self, base, a, b):
        super().__init__()
        self.fc1 = nn.Linear(base.shape[1], base.shape[0], bias=False)
        self.fc1_lora_A = nn.Linear(a.shape[1], a.shape[0], bias=False)
        self.fc1_lora_B = nn.Linear(b.shape[1], b.shape[0], bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.from_numpy(base))
            self.fc1_lora_A.weight.copy_(torch.from_numpy(a))
            self.fc1_lora_B.weight.copy_(torch.from_numpy(b))


def rows(df):
    return [{k: r[k] for k in df.columns} for _, r in df.iterrows()]


def signature():
    out = {}
    for name in METHODS:
        sig = inspect.signature(getattr(ww.WeightWatcher, name))
        out[name] = [
            dict(
                name=p.name,
                kind=str(p.kind),
                default=None if p.default is inspect.Parameter.empty else repr(p.default),
                has_default=p.default is not inspect.Parameter.empty,
            )
            for p in sig.parameters.values()
            if p.name != "self"
        ]
    doc = dict(
        ww_version=ww.__version__,
        how="inspect.signature(getattr(weightwatcher.WeightWatcher, name)); default = repr()",
        methods=out,
    )
    with open(os.path.join(HERE, "ww077_signature.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def analyze_calls(state, arrays):
    model = digits(state)
    out = {}

    def run(label, seed=1500, **kw):
        # WeightWatcher's unseeded draws (shuffles, randint, and scipy's ARPACK start vector of
        # its truncated SVDs, taken from the global numpy RNG) are pinned before every call
        np.random.seed(seed)
        watcher = ww.WeightWatcher(model=model)
        details = quiet(watcher.analyze, **kw)
        out[label] = dict(
            call=f"analyze({kw})",
            np_random_seed=seed,
            details=rows(details),
            summary=watcher.get_summary(),
        )

    run("ww2x", ww2x=True)
    run("xmax_minus2", xmax=-2)
    run("clip_xmax_thresh_0.05", fix_fingers="clip_xmax", finger_thresh=0.05)
    run("clip_xmax_max_fingers_4", fix_fingers="clip_xmax", finger_thresh=0.05, max_fingers=4)
    run("ERG", ERG=True)
    run("tolerance_0.01", tolerance=0.01)
    run("conv2d_norm_false", conv2d_norm=False)
    run("conv2d_norm_false_pool_false", conv2d_norm=False, pool=False)
    run("start_ids_1", start_ids=1)
    run("vectors", vectors=True)
    run("intra_no_sparsify", intra=True, sparsify=False)
    run("stacked", stacked=True)
    run("inverse", inverse=True)
    run("conv2d_fft", conv2d_fft=True)
    run("min_evals_50", min_evals=50)
    run("layers_names", layers=["fc1", "conv2"])
    run("layers_minus", layers=[-5, -6])
    run("xmin_peak", fix_fingers="xmin_peak")
    run("xmin_peak_xmin_max_0.3", fix_fingers="xmin_peak", xmin_max=0.3)
    run("svd_method_accurate", svd_method="accurate")
    run("max_evals_200", max_evals=200)
    watcher = ww.WeightWatcher(model=model)
    out["describe"] = dict(call="describe()", details=rows(quiet(watcher.describe)))

    # intra with sparsify: record WeightWatcher's own 0/1 masks as it draws them
    drawn = []
    original = np.random.randint

    def recording(*a, **k):
        value = original(*a, **k)
        drawn.append(np.asarray(value))
        return value

    np.random.randint = recording
    try:
        run("intra_sparsify", seed=1515, intra=True)
    finally:
        np.random.randint = original
    masks = []
    for i, s in enumerate(drawn):
        m = int(round(np.sqrt(s.size)))
        arrays[f"intra_mask_{i}"] = s.reshape(m, m).astype(np.int8)
        masks.append(f"intra_mask_{i}")
    out["intra_sparsify"]["masks_npz"] = masks

    # fingers: a layer where finger_thresh decides
    fw = finger_matrix()
    arrays["fingers_W"] = fw
    for label, kw in [
        ("fingers_default", dict(fix_fingers="clip_xmax")),
        ("fingers_thresh_10", dict(fix_fingers="clip_xmax", finger_thresh=10.0)),
        ("fingers_max_3", dict(fix_fingers="clip_xmax", max_fingers=3)),
        ("fingers_none", dict()),
    ]:
        watcher = ww.WeightWatcher(model=FingerNet(fw))
        details = quiet(watcher.analyze, **kw)
        out[label] = dict(call=f"FingerNet: analyze({kw})", details=rows(details))
    return out


def lora_calls(arrays):
    rng = np.random.default_rng(1502)
    base = (0.05 * rng.standard_normal((96, 64))).astype(np.float32)
    a = (0.1 * rng.standard_normal((8, 64))).astype(np.float32)
    b = (0.1 * rng.standard_normal((96, 8))).astype(np.float32)
    arrays.update(lora_base=base, lora_A=a, lora_B=b)
    out = {}
    for label, peft in [("peft_true", True), ("peft_with_base", "with_base")]:
        np.random.seed(1500)  # the ARPACK start vector of the truncated SVDs
        watcher = ww.WeightWatcher(model=LoraNet(base, a, b))
        details = quiet(watcher.analyze, peft=peft)
        out[label] = dict(call=f"LoraNet: analyze(peft={peft!r})", details=rows(details))
    return out


def other_model(state):
    """The second model of `distances`: a closed-form perturbation of the trained one (tests
    rebuild it the same way): 1.01 * v + 0.002 * sin(0, 1, 2, ...), in float32."""
    return {
        k: (
            1.01 * v.astype(np.float64) + 0.002 * np.sin(np.arange(v.size)).reshape(v.shape)
        ).astype(np.float32)
        for k, v in state.items()
    }


def distance_calls(state, arrays):
    other = other_model(state)
    out = {}
    for method in ["raw", "euclidean", "cka"]:
        for pool in [True, False]:
            watcher = ww.WeightWatcher()
            avg_dw, avg_db, details = quiet(
                watcher.distances, digits(state), digits(other), method=method, pool=pool
            )
            d = details.reset_index()
            out[f"{method}_pool_{pool}"] = dict(avg_dW=avg_dw, avg_db=avg_db, details=rows(d))
    return out


def layer_calls(state, arrays):
    model = digits(state)
    out = {}
    for layer in [2, 5]:
        e = np.asarray(quiet(ww.WeightWatcher(model=model).get_ESD, layer=layer))
        np.random.seed(1504)
        r = np.asarray(quiet(ww.WeightWatcher(model=model).get_ESD, layer=layer, random=True))
        mats = quiet(ww.WeightWatcher(model=model).get_Weights, layer=layer)
        arrays[f"get_ESD_{layer}"] = e
        out[str(layer)] = dict(
            n_esd=len(e),
            n_random=len(r),
            sum_esd=float(e.sum()),
            sum_random=float(r.sum()),
            max_random=float(r.max()),
            n_weights=len(mats),
            weight_shapes=[list(np.shape(w)) for w in mats],
            weight_fro=[float(np.linalg.norm(w)) for w in mats],
            weight_first=[float(np.asarray(w).flat[0]) for w in mats],
        )
    return out


def smoothing_calls(state, arrays):
    """SVDSmoothing of every layer but conv1: WeightWatcher 0.7.7 raises on its 32 x 1 slices
    (sklearn's TruncatedSVD needs 2 columns)."""
    out = {}
    for label, kw in [
        ("defaults", {}),
        ("svd_percent_0.3", dict(method="svd", percent=0.3)),
        ("svd_percent_minus_0.2", dict(method="svd", percent=-0.2)),
        ("alpha_min", dict(method="alpha_min")),
    ]:
        model = digits(state)
        smoothed = quiet(ww.WeightWatcher(model=model).SVDSmoothing, layers=[2, 3, 5, 6, 7], **kw)
        res = {}
        for name in ["conv2", "conv3", "fc1", "fc2", "fc3"]:
            w = getattr(smoothed, name).weight.detach().numpy().astype(np.float64)
            mats = (
                [w]
                if w.ndim == 2
                else [w[:, :, i, j] for i in range(w.shape[2]) for j in range(w.shape[3])]
            )
            svals = [np.sort(np.linalg.svd(m, compute_uv=False))[::-1] for m in mats]
            arrays[f"smooth_{label}__{name}"] = np.stack(svals)
            res[name] = dict(
                shape=list(w.shape),
                fro=float(np.linalg.norm(w)),
                svals_npz=f"smooth_{label}__{name}",
            )
        out[label] = dict(call=f"SVDSmoothing(layers=[2, 3, 5, 6, 7], **{kw})", layers=res)
    return out


def main():
    signature()
    state = dict(np.load(os.path.join(HERE, "trained_digits_weights.npz")))
    arrays = {}
    doc = dict(
        ww_version=ww.__version__,
        torch_version=torch.__version__,
        model="DigitsNet with trained_digits_weights.npz (see make_ww_reference.py)",
        analyze=analyze_calls(state, arrays),
        lora=lora_calls(arrays),
        distances=distance_calls(state, arrays),
        layers=layer_calls(state, arrays),
        smoothing=smoothing_calls(state, arrays),
    )
    np.savez_compressed(os.path.join(HERE, "ww077_options.npz"), **arrays)
    with open(os.path.join(HERE, "ww077_options.json"), "w") as f:
        json.dump(to_py(doc), f, indent=1)
        f.write("\n")
    print("done:", sorted(doc["analyze"]))


if __name__ == "__main__":
    main()
