"""The optional analyses (vectors, spacing, inverse, conv2d_fft, intra, stacked) through
rmtkit.analyze: each option's columns against the core
functions they are made of, on small models built here."""

import json
from pathlib import Path

import numpy as np
import pytest
from _deps import require

import rmtkit
from rmtkit.errors import InvalidArgumentError

REF = Path(__file__).resolve().parents[1] / "reference"
RNG = np.random.default_rng(1515)
#: a small model: a 3x3 conv, two dense layers that chain (torch layout: (out, in))
LAYERS = {
    "conv": (0.1 * RNG.standard_t(3.0, size=(24, 16, 3, 3))).astype(np.float32),
    "fc1": (0.1 * RNG.standard_t(3.0, size=(120, 90))).astype(np.float32),
    "fc2": (0.1 * RNG.standard_t(3.0, size=(60, 120))).astype(np.float32),
}


def model():
    return rmtkit.from_layers(LAYERS)


def run(**kw):
    return rmtkit.analyze(model(), min_evals=8, progress=False, **kw)


def row(ds, name):
    return ds.isel(layer=list(ds["name"].values).index(name))


def spectrum(name, **kw):
    da = rmtkit.spectra(model(), layers=[name], **kw)
    e = da.isel(layer=0).values
    return e[np.isfinite(e)]


def test_singular_values():
    ds = run(singular_values=True)
    for name, w in LAYERS.items():
        e = spectrum(name)
        r = row(ds, name)
        assert float(r.sv_max) == pytest.approx(np.sqrt(e.max()), rel=1e-12)
        assert float(r.sv_min) == pytest.approx(np.sqrt(e.min()), rel=1e-12)
    s = np.linalg.svd(LAYERS["fc1"].astype(np.float64), compute_uv=False)
    assert float(row(ds, "fc1").sv_max) == pytest.approx(s.max(), rel=1e-9)
    assert float(row(ds, "fc1").sv_min) == pytest.approx(s.min(), rel=1e-6)


def test_tolerance_and_conv2d_norm():
    e = spectrum("fc1")
    tol = float(np.quantile(e, 0.3))
    ds = run(tolerance=tol)
    assert float(row(ds, "fc1").weak_rank_loss) == np.sum(e < tol)
    base, raw = run(), run(conv2d_norm=False)
    assert float(row(raw, "conv").lambda_max) == pytest.approx(
        2 * float(row(base, "conv").lambda_max)
    )
    assert float(row(raw, "fc1").lambda_max) == float(row(base, "fc1").lambda_max)
    assert float(row(raw, "conv").alpha) == pytest.approx(float(row(base, "conv").alpha), rel=1e-9)
    unpooled = rmtkit.analyze(model(), pool=False, conv2d_norm=False, progress=False, layers="conv")
    slice0 = LAYERS["conv"][:, :, 0, 0].astype(np.float64)
    top = np.linalg.svd(slice0, compute_uv=False).max() ** 2
    assert float(unpooled.lambda_max[0]) == pytest.approx(top, rel=1e-9)  # times 1, not rf/2


def test_finger_knobs_on_the_reference_fingers_matrix():
    """WeightWatcher 0.7.7's fingers case (ww077_options.npz): clip_xmax drops 2 values at the
    default finger_thresh, none at 10."""
    w = np.load(REF / "ww077_options.npz")["fingers_W"]
    tree = rmtkit.from_layers({"fc": w})
    clipped = rmtkit.analyze(tree, fix_fingers="clip_xmax", progress=False)
    kept = rmtkit.analyze(tree, fix_fingers="clip_xmax", finger_thresh=10.0, progress=False)
    assert int(clipped.num_fingers[0]) == 2 and int(kept.num_fingers[0]) == 0
    assert float(kept.alpha[0]) == float(kept.raw_alpha[0]) == float(clipped.raw_alpha[0])
    fit = rmtkit.fit_pl(rmtkit.esd(w), fix_fingers="clip_xmax", max_fingers=3)
    short = rmtkit.analyze(tree, fix_fingers="clip_xmax", max_fingers=3, progress=False)
    assert float(short.alpha[0]) == pytest.approx(float(fit.alpha), rel=1e-12)


def test_spacing_columns_are_level_spacing_of_the_bulk():
    ds = run(spacing=True)
    for name in LAYERS:
        r = row(ds, name)
        e = spectrum(name)
        bulk = e[(e > 1e-5) & (e < float(r.xmin))]
        ref = rmtkit.level_spacing(bulk)
        assert float(r.mean_spacing_ratio) == pytest.approx(float(ref.mean_ratio), rel=1e-10)
        assert float(r.spacing_ks_wigner) == pytest.approx(float(ref.ks_wigner), rel=1e-8)
        assert float(r.spacing_ks_poisson) == pytest.approx(float(ref.ks_poisson), rel=1e-8)


def _split_at(evals, xmin) -> float:
    """A threshold halfway between the eigenvalue nearest ``xmin`` and the one below it: the
    bulk / tail split of ``xmin`` in ``evals`` (another eigensolver's values, which differ from
    the analysis's by ulps: the xmin eigenvalue itself could fall on either side)."""
    e = np.sort(np.asarray(evals))
    k = int(np.argmin(np.abs(e - float(xmin))))
    return float((e[k - 1] + e[k]) / 2) if k > 0 else float(e[0]) / 2


def test_vector_columns_are_bulk_tail_of_eigenvector_metrics():
    ds = run(vectors=True)
    for name, w in LAYERS.items():
        r = row(ds, name)
        vm = rmtkit.eigenvector_metrics(w.astype(np.float64), scale=0.5 if w.ndim == 4 else 1.0)
        for metric in ("vec_entropy", "loc_ratio", "part_ratio"):
            bt = rmtkit.bulk_tail(getattr(vm, metric), vm.evals, _split_at(vm.evals, r.xmin))
            assert float(r[f"bulk_mean_{metric}"]) == pytest.approx(float(bt.bulk_mean), rel=1e-8)
            assert float(r[f"tail_var_{metric}"]) == pytest.approx(float(bt.tail_var), rel=1e-6)


def test_inverse():
    ds = run(inverse=True)
    e = spectrum("fc1")
    fit = rmtkit.fit_pl(np.sort(1 / e))
    assert float(row(ds, "fc1").alpha) == pytest.approx(float(fit.alpha), rel=1e-12)
    assert float(row(ds, "fc1").lambda_max) == pytest.approx(1 / e.min(), rel=1e-12)
    np.testing.assert_allclose(spectrum("fc1", inverse=True), np.sort(1 / e), rtol=1e-12)


def test_conv2d_fft_rows():
    ds = run(conv2d_fft=True)
    r = row(ds, "conv")
    assert (int(r.N), int(r.M), int(r.rf)) == (24 * 1024, 16 * 1024, 1)
    e = np.asarray(rmtkit.conv2d_fft_esd(LAYERS["conv"].astype(np.float64)))
    assert float(r.num_evals) == e.size and float(r.lambda_max) == pytest.approx(e.max())
    assert float(r.alpha) == pytest.approx(float(rmtkit.fit_pl(e).alpha), rel=1e-9)
    assert float(row(ds, "fc1").alpha) == float(row(run(), "fc1").alpha)  # dense rows unchanged
    desc = rmtkit.describe(model(), conv2d_fft=True)
    assert list(desc.num_evals.values) == list(ds.num_evals.values)


def test_intra_rows():
    ds = run(intra=True, sparsify=False)
    assert list(ds["name"].values) == ["fc1.X.fc2"]  # the conv breaks the chain
    x = np.asarray(rmtkit.intra_matrix(LAYERS["fc1"], LAYERS["fc2"]), dtype=np.float64)
    s = np.sort(np.linalg.svd(x, compute_uv=False))
    assert float(ds.alpha[0]) == pytest.approx(float(rmtkit.fit_pl(s).alpha), rel=1e-9)
    assert float(ds.lambda_max[0]) == pytest.approx(s.max(), rel=1e-9)  # singular values (WW)
    a, b = run(intra=True, key=1), run(intra=True, key=1)
    assert float(a.alpha[0]) == float(b.alpha[0])
    assert float(run(intra=True, key=2).norm[0]) != float(a.norm[0])


def test_stacked_row():
    ds = run(stacked=True)
    assert ds.sizes["layer"] == 1 and str(ds["name"].values[0]) == "stacked"
    conv = LAYERS["conv"].astype(np.float64)
    side = np.concatenate(list(np.asarray(rmtkit.slices(conv))), axis=1)
    x = np.asarray(rmtkit.stacked_matrix([side, LAYERS["fc1"], LAYERS["fc2"]]))
    e = np.sort(np.linalg.svd(x, compute_uv=False) ** 2)
    assert (int(ds.N[0]), int(ds.M[0])) == x.shape
    assert float(ds.alpha[0]) == pytest.approx(float(rmtkit.fit_pl(e).alpha), rel=1e-9)


def test_lora_with_base(tmp_path):
    safetensors = require("safetensors.numpy")
    base = {"fc1": LAYERS["fc1"], "fc2": LAYERS["fc2"]}
    rng = np.random.default_rng(5)
    a = (0.1 * rng.standard_normal((4, 90))).astype(np.float32)
    b = (0.1 * rng.standard_normal((120, 4))).astype(np.float32)
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 8}))
    safetensors.save_file(
        {"base_model.model.fc1.lora_A.weight": a, "base_model.model.fc1.lora_B.weight": b},
        str(folder / "adapter_model.safetensors"),
    )
    tree = rmtkit.from_layers(base)
    ds = rmtkit.analyze(folder, base=tree, lora="with_base", min_evals=8, progress=False)
    names = list(ds["name"].values)
    assert names == ["fc1", "fc2", "fc1/lora_BA", "fc1/lora_W_plus_AB"]
    plain = rmtkit.analyze(tree, min_evals=8, progress=False)
    delta = rmtkit.analyze(folder, base=tree, min_evals=8, progress=False)
    merged = rmtkit.analyze(folder, base=tree, lora="merged", min_evals=8, progress=False)
    assert float(row(ds, "fc1").alpha) == float(row(plain, "fc1").alpha)
    lora_ba = row(ds, "fc1/lora_BA")  # rank 4: not fitted, scale metrics kept
    assert str(lora_ba.warning.values) == str(row(delta, "fc1").warning.values) == "rank-deficient"
    assert float(lora_ba.norm) == float(row(delta, "fc1").norm)
    assert float(row(ds, "fc1/lora_W_plus_AB").alpha) == float(row(merged, "fc1").alpha)
    assert len(set(ds.layer_id.values)) == 4


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "kw",
    [
        dict(intra=True, randomize=True),
        dict(intra=True, vectors=True),
        dict(inverse=True, vectors=True),
        dict(conv2d_fft=True, pool=False),
        dict(stacked=True, pool=False),
        dict(conv2d_fft=True, randomize=True),
        dict(tolerance=0.0),
        dict(finger_thresh=-1.0, fix_fingers="clip_xmax"),
        dict(max_fingers=0),
        dict(spacing="yes"),
        dict(conv2d_norm=None),
    ],
)
def test_bad_options(kw):
    with pytest.raises(InvalidArgumentError):
        run(**kw)


@pytest.mark.bad_input
def test_intra_without_a_chain():
    with pytest.raises(InvalidArgumentError, match="chain"):
        rmtkit.analyze(
            rmtkit.from_layers({"a": np.ones((5, 3)), "b": np.ones((7, 11))}), intra=True
        )
