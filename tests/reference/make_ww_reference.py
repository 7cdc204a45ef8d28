"""Generate the stored WeightWatcher 0.7.7 reference numbers used by rmtkit's tests.

Runs ONLY in a scratch environment that has weightwatcher==0.7.7, torch==2.13.0 (CPU) and
scikit-learn installed -- WeightWatcher is never a dependency of rmtkit:

    python3 -m venv /tmp/wwenv
    /tmp/wwenv/bin/pip install weightwatcher==0.7.7 torch==2.13.0 scikit-learn
    /tmp/wwenv/bin/python tests/reference/make_ww_reference.py

Fully deterministic: every random draw uses a fixed numpy seed (numpy.random.default_rng for
the data, numpy.random.seed for WW's own unseeded np.random.shuffle), torch runs
single-threaded with deterministic algorithms.  Writes, next to this file:

    ww077_fit_pl.npz / .json        WW's default power-law fit on >= 24 spectra
    ww077_randomize.npz / .json     rand_distance pairs, detX spectra, num_traps matrices + runs
    ww077_analyze.json              WW analyze() rows + get_summary() of the trained digits model
    ww077_analyze_evals.npz         the per-layer ESDs WW's analyze() fitted (recomputed the WW way)
    trained_digits_weights.npz      the trained model's parameters, torch names and layouts
"""
import io
import json
import os
import sys
import contextlib
import logging

import numpy as np
import scipy
import scipy.linalg

os.environ.setdefault("PYTHONHASHSEED", "0")

import torch
import torch.nn as nn

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import weightwatcher as ww
from weightwatcher import RMT_Util
from weightwatcher.WW_powerlaw import WWFit, SMALL_N_CUTOFF
from weightwatcher.constants import EVALS_THRESH

logging.getLogger("weightwatcher").setLevel(logging.ERROR)

HERE = os.path.dirname(os.path.abspath(__file__))
assert ww.__version__ == "0.7.7", ww.__version__


# ----------------------------------------------------------------------------- helpers
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
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    if x is None or isinstance(x, (int, str)):
        return x
    return str(x)


def dump_json(obj, name):
    with open(os.path.join(HERE, name), "w") as f:
        json.dump(to_py(obj), f, indent=1, sort_keys=False)
        f.write("\n")


def esd_raw(W):
    """Raw eigenvalues of W^T W (lambda = s^2), ascending, as WW computes them
    (W.astype(float); scipy.linalg.svd(compute_uv=False); square)."""
    W = np.asarray(W).astype(float)
    sv = scipy.linalg.svd(W, compute_uv=False)
    return np.sort(sv * sv)


def quiet(fn, *a, **k):
    """Call fn swallowing stdout (WW's small-N path prints 'SMALL N PL FIT')."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        return fn(*a, **k)


WATCHER = ww.WeightWatcher()


def ww_default_fit(evals):
    """WW's default PL fit: WeightWatcher.fit_powerlaw(evals, plot=False) with all other args default
    (pl_package='ww' -> WW_powerlaw.WWFit, thresh=EVALS_THRESH=1e-5, xmin=None, xmax=None)."""
    (alpha, Lambda, xmin, xmax, D, sigma, num_pl_spikes, num_fingers, raw_alpha, status,
     warning) = quiet(WATCHER.fit_powerlaw, np.asarray(evals, dtype=np.float64), plot=False)
    out = dict(alpha=alpha, xmin=xmin, xmax=xmax, D=D, sigma=sigma, num_pl_spikes=num_pl_spikes,
               Lambda=Lambda, num_fingers=num_fingers, raw_alpha=raw_alpha, status=status,
               warning=warning)
    # extra diagnostics straight from WW's fit object (same code path: pl_fit -> WWFit)
    nz = np.asarray(evals, dtype=np.float64)
    nz = nz[nz > EVALS_THRESH]
    out["n_after_thresh"] = int(len(nz))
    out["small_n_path"] = bool(len(nz) < SMALL_N_CUTOFF)
    if status == "success":
        fit = quiet(WWFit, nz)
        # WWFit.__init__ ALWAYS re-selects i = argmin(Ds) after fit_power_law(), also on the small-N
        # path, overriding the small-N objective J = D - 0.868/sqrt(n) (computed but not used).
        i_best = int(np.argmin(fit.Ds))
        out["i_best"] = i_best                      # 0-based index of xmin in sorted nz evals
        out["tail_size"] = int(len(nz) - i_best)    # n_i used in alpha and sigma
        assert fit.alpha == alpha and fit.xmin == xmin == nz[i_best]
        if len(nz) >= 8:
            assert np.isclose(fit.sigma, (fit.alpha - 1) / np.sqrt(len(nz) - i_best), rtol=1e-12)
        # n < 8: WW's fallback sets alphas[0] AFTER computing sigmas, so sigma = (0 - 1)/sqrt(n) < 0
        if len(nz) < SMALL_N_CUTOFF and np.isfinite(fit.Js).any():
            # what the (unused) small-N objective would have picked, for information only
            j = int(np.nanargmin(fit.Js))
            out["small_n_argminJ"] = dict(i=j, tail_size=int(len(nz) - j), alpha=float(fit.alphas[j]),
                                          xmin=float(nz[j]), D=float(fit.Ds[j]), J=float(fit.Js[j]))
    return out


def ww_clip_xmax_fit(evals):
    """WW's fix_fingers='clip_xmax' fit (default max_fingers=10, finger_thresh=1.0)."""
    try:
        (alpha, Lambda, xmin, xmax, D, sigma, num_pl_spikes, num_fingers, raw_alpha, status,
         warning) = quiet(WATCHER.fit_powerlaw, np.sort(np.asarray(evals, dtype=np.float64)),
                          plot=False, fix_fingers="clip_xmax")
    except Exception as err:  # pragma: no cover
        return dict(status="exception", error=str(err))
    return dict(alpha=alpha, xmin=xmin, xmax=xmax, D=D, sigma=sigma, num_pl_spikes=num_pl_spikes,
                num_fingers=num_fingers, raw_alpha=raw_alpha, status=status)


# ----------------------------------------------------------------------------- matrices
def gaussian(rng, N, M):
    return rng.standard_normal((N, M))


def spiked(rng, N, M, thetas):
    """Gaussian N(0,1) noise + sum_k theta_k * sqrt(N) * u_k v_k^T (orthonormal u, v)."""
    W = rng.standard_normal((N, M))
    U, _ = np.linalg.qr(rng.standard_normal((N, len(thetas))))
    V, _ = np.linalg.qr(rng.standard_normal((M, len(thetas))))
    for k, th in enumerate(thetas):
        W += th * np.sqrt(N) * np.outer(U[:, k], V[:, k])
    return W


def pareto(rng, N, M, mu):
    """Symmetric Pareto entries: sign * U^(-1/mu), tail P(|x|>t) = t^-mu, t >= 1."""
    return rng.choice([-1.0, 1.0], size=(N, M)) * rng.uniform(size=(N, M)) ** (-1.0 / mu)


def student_t(rng, N, M, df):
    return rng.standard_t(df, size=(N, M))


# ----------------------------------------------------------------------------- trained model
class DigitsNet(nn.Module):
    """Small CNN + MLP head for sklearn's 8x8 digits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)    # 8x8 -> 8x8
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)   # 8x8 -> 8x8   (9 slices of 64x32)
        self.conv3 = nn.Conv2d(64, 32, 2)              # 8x8 -> 7x7   (4 slices 32x64: WW N/M swap)
        self.pool = nn.MaxPool2d(2)                    # 7x7 -> 3x3
        self.fc1 = nn.Linear(288, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.pool(self.act(self.conv3(x)))
        x = x.flatten(1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


def train_digits():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = y.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(X))
    n_train = 1347
    tr, te = perm[:n_train], perm[n_train:]
    Xtr, ytr = torch.from_numpy(X[tr]), torch.from_numpy(y[tr])
    Xte, yte = torch.from_numpy(X[te]), torch.from_numpy(y[te])

    torch.manual_seed(0)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    epochs, bs = 30, 32
    g = torch.Generator().manual_seed(0)
    for ep in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=g)
        for k in range(0, n_train, bs):
            idx = order[k:k + bs]
            opt.zero_grad()
            loss = loss_fn(model(Xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(Xte).argmax(1) == yte).float().mean())
        train_acc = float((model(Xtr).argmax(1) == ytr).float().mean())
    info = dict(dataset="sklearn.datasets.load_digits (1797 8x8 images, /16 scaled)",
                split="numpy default_rng(0) permutation; first 1347 train, last 450 test",
                optimizer="Adam lr=2e-3", epochs=epochs, batch_size=bs, torch_seed=0,
                test_accuracy=acc, train_accuracy=train_acc)
    return model, info


def ww_layer_esd(W):
    """The ESD WW's analyze() fits for one torch weight (default params: pool=True, conv2d_norm=True).
    Dense (out,in): svd of the matrix. Conv2d (out,in,kh,kw): slices W[:,:,i,j], each transposed to
    N >= M, each multiplied by sqrt(conv2d_count/2) = sqrt(1/2) (conv2d_count = 1 when pooling),
    eigenvalues concatenated and sorted.  Mirrors apply_normalize_Wmats + combined_eigenvalues."""
    W = np.asarray(W)
    if W.ndim == 2:
        return esd_raw(W)
    mats = []
    for i in range(W.shape[2]):
        for j in range(W.shape[3]):
            S = W[:, :, i, j]
            if S.shape[0] < S.shape[1]:
                S = S.T
            mats.append(S * np.sqrt(1 / 2.0))
    return np.sort(np.concatenate([esd_raw(S) for S in mats]))


# ============================================================================= (a) fit_pl
def make_fit_pl_cases(trained_model):
    cases = []   # (name, description, evals)

    def add(name, desc, evals):
        evals = np.sort(np.asarray(evals, dtype=np.float64))
        cases.append((name, desc, evals))

    seed = 100
    for (N, M) in [(200, 100), (500, 250), (1000, 300), (768, 768), (3072, 768)]:
        seed += 1
        rng = np.random.default_rng(seed)
        add(f"gauss_{N}x{M}", f"Gaussian N(0,1) {N}x{M}, default_rng({seed})",
            esd_raw(gaussian(rng, N, M)))

    for (N, M, thetas) in [(500, 250, [3.0]), (1000, 300, [2.0, 4.0]), (768, 768, [2.0, 3.0, 5.0])]:
        seed += 1
        rng = np.random.default_rng(seed)
        add(f"spiked_r{len(thetas)}_{N}x{M}",
            f"Gaussian {N}x{M} + rank-{len(thetas)} signal thetas={thetas} (x sqrt(N) u v^T), "
            f"default_rng({seed})", esd_raw(spiked(rng, N, M, thetas)))

    for (N, M, mu) in [(400, 200, 1.0), (1000, 500, 1.5), (500, 250, 2.0), (768, 768, 2.5),
                       (1000, 300, 3.0), (600, 300, 4.0)]:
        seed += 1
        rng = np.random.default_rng(seed)
        add(f"pareto_mu{mu}_{N}x{M}",
            f"symmetric Pareto entries tail index mu={mu}, {N}x{M}, default_rng({seed})",
            esd_raw(pareto(rng, N, M, mu)))

    for (N, M, df) in [(600, 300, 1.5), (1000, 300, 2.5), (512, 256, 3.5)]:
        seed += 1
        rng = np.random.default_rng(seed)
        add(f"student_t{df}_{N}x{M}",
            f"Student-t entries df={df}, {N}x{M}, default_rng({seed})",
            esd_raw(student_t(rng, N, M, df)))

    # ties / duplicates
    seed += 1
    rng = np.random.default_rng(seed)
    ev = esd_raw(gaussian(rng, 300, 150))
    add("ties_duplicated_gauss", f"every eigenvalue of a Gaussian 300x150 (default_rng({seed})) "
        "twice (= block-diag of two identical blocks); n=300", np.concatenate([ev, ev]))
    seed += 1
    rng = np.random.default_rng(seed)
    ev = esd_raw(pareto(rng, 400, 200, 2.0))
    add("ties_duplicated_pareto", f"every eigenvalue of a Pareto mu=2 400x200 (default_rng({seed})) "
        "twice: tail duplicates too (num_pl_spikes vs tail size)", np.concatenate([ev, ev]))
    seed += 1
    rng = np.random.default_rng(seed)
    ev = esd_raw(student_t(rng, 500, 250, 3.0))
    rounded = np.array([float(f"{v:.2g}") for v in ev])
    add("ties_rounded_t3", f"Student-t df=3 500x250 (default_rng({seed})) eigenvalues rounded to "
        "2 significant digits: many ties", rounded)

    # small-N rule (n < 20 after the 1e-5 threshold) and its boundary
    for (N, M, kind) in [(40, 12, "pareto2"), (50, 15, "gauss"), (60, 19, "t2"), (60, 20, "pareto2")]:
        seed += 1
        rng = np.random.default_rng(seed)
        if kind == "pareto2":
            W = pareto(rng, N, M, 2.0)
        elif kind == "gauss":
            W = gaussian(rng, N, M)
        else:
            W = student_t(rng, N, M, 2.0)
        add(f"small_{kind}_{N}x{M}", f"{kind} {N}x{M} (n={M}; WW small-N rule applies iff n<20), "
            f"default_rng({seed})", esd_raw(W))

    # absolute threshold 1e-5
    seed += 1
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((300, 100)) @ rng.standard_normal((100, 150))   # rank 100 < 150
    add("rank_deficient_300x150", f"rank-100 product 300x150 (default_rng({seed})): 50 eigenvalues ~1e-12 "
        "are dropped by the 1e-5 threshold", esd_raw(W))
    seed += 1
    rng = np.random.default_rng(seed)
    add("partly_below_thresh_200x100", f"Gaussian 200x100 with std 3e-4 (default_rng({seed})): "
        "eigenvalues ~1.5e-6..6e-5 straddle the absolute 1e-5 threshold", esd_raw(3e-4 * gaussian(rng, 200, 100)))

    # edge cases: n < 8 (WW's small-N fallback) and a failed fit (nothing above 1e-5)
    seed += 1
    rng = np.random.default_rng(seed)
    add("tiny_n6_pareto", f"Pareto mu=2 30x6 (n=6 < 8: WW small-N fallback, tail = all), default_rng({seed})",
        esd_raw(pareto(rng, 30, 6, 2.0)))
    seed += 1
    rng = np.random.default_rng(seed)
    add("fail_all_below_thresh", f"Gaussian 100x50 with std 1e-5 (default_rng({seed})): every eigenvalue < 1e-5, "
        "WW's fit fails (status 'failed', all values -1)", esd_raw(1e-5 * gaussian(rng, 100, 50)))

    # real trained layers (the ESD exactly as WW's analyze() builds it)
    sd = {k: v.detach().numpy() for k, v in trained_model.state_dict().items()}
    for lname in ["fc1", "fc2", "fc3", "conv2", "conv3", "conv1"]:
        W = sd[f"{lname}.weight"]
        desc = f"trained DigitsNet {lname}.weight {tuple(W.shape)}"
        if W.ndim == 4:
            desc += " (Conv2d: kh*kw slices oriented N>=M, pooled, x1/2 as WW conv2d_norm)"
        add(f"trained_{lname}", desc, ww_layer_esd(W))

    return cases


def run_fit_pl(trained_model):
    cases = make_fit_pl_cases(trained_model)
    arrays, meta = {}, []
    for name, desc, evals in cases:
        res = ww_default_fit(evals)
        entry = dict(name=name, description=desc, n=int(len(evals)))
        entry.update(res)
        entry["clip_xmax"] = ww_clip_xmax_fit(evals)
        arrays[name] = evals
        meta.append(entry)
        print(f"  fit_pl {name:32s} n={len(evals):5d} alpha={res['alpha']:.4f} xmin={res['xmin']:.4g} "
              f"D={res['D']:.4f} spikes={res['num_pl_spikes']} tail={res.get('tail_size')}")
    np.savez_compressed(os.path.join(HERE, "ww077_fit_pl.npz"), **arrays)
    doc = dict(
        ww_version=ww.__version__,
        function="weightwatcher.WeightWatcher().fit_powerlaw(evals, plot=False) (all other args default: "
                 "pl_package='ww' -> WW_powerlaw.WWFit, thresh=1e-5, xmin=None, xmax=None, fix_fingers=False)",
        units="raw eigenvalues lambda = s^2 of W (no 1/N); stored ascending in ww077_fit_pl.npz under key = name",
        fields=dict(
            alpha="MLE alpha at the chosen xmin", xmin="chosen xmin (an eigenvalue)",
            xmax="largest eigenvalue above threshold", D="KS distance at xmin",
            sigma="(alpha-1)/sqrt(tail_size)", num_pl_spikes="WW: len(evals[evals >= xmin]) (counts duplicates of xmin)",
            tail_size="n_i = n_after_thresh - i_best (used in alpha/sigma)",
            i_best="0-based index of xmin among the sorted evals > 1e-5",
            n_after_thresh="number of evals > 1e-5",
            small_n_path="n_after_thresh < 20: tails >= 8 only, alpha = 1 + (n_i-1)/S_i, still argmin D",
            small_n_argminJ="small-N only, informational: candidate minimising D - 0.868/sqrt(n_i) (WW computes it "
                            "but WWFit.__init__ overrides it with argmin D)",
            Lambda="-1 (PL fit)", num_fingers="0 (no fix_fingers)", raw_alpha="-1 (no fix_fingers)",
            status="'success' | 'failed'", warning="'over-trained' alpha<2, 'under-trained' alpha>6, ''",
            clip_xmax="same fields from fit_powerlaw(sorted evals, plot=False, fix_fingers='clip_xmax')"),
        cases=meta)
    dump_json(doc, "ww077_fit_pl.json")
    return meta


# ============================================================================= (b) randomize
def permute_entries(W, rng):
    """Uniform permutation of all entries (per conv slice for 4-D kernels handled by the caller)."""
    flat = np.asarray(W).reshape(-1)
    return flat[rng.permutation(flat.size)].reshape(W.shape)


def js_normalized_first(p, q):
    p = np.asarray(p, float) / np.sum(p)
    q = np.asarray(q, float) / np.sum(q)
    m = (p + q) / 2
    from scipy.stats import entropy
    return float(np.sqrt((entropy(p, m) + entropy(q, m)) / 2))


def run_randomize(trained_model):
    arrays = {}
    sd = {k: v.detach().numpy() for k, v in trained_model.state_dict().items()}

    # --- rand_distance pairs
    pairs = []

    def add_pair(name, desc, W, seed, conv=False):
        rng = np.random.default_rng(seed)
        if conv:
            orig = ww_layer_esd(W)
            Wp = np.empty_like(W)
            for i in range(W.shape[2]):
                for j in range(W.shape[3]):
                    Wp[:, :, i, j] = permute_entries(W[:, :, i, j], rng)
            rand = ww_layer_esd(Wp)
        else:
            orig = esd_raw(W)
            rand = esd_raw(permute_entries(W, rng))
        val = RMT_Util.jensen_shannon_distance(orig, rand)
        arrays[f"{name}__orig"] = orig
        arrays[f"{name}__rand"] = rand
        pairs.append(dict(name=name, description=desc, n=int(len(orig)), permutation_seed=seed,
                          rand_distance=float(val),
                          js_normalized_first=js_normalized_first(orig, rand),
                          sum_orig=float(orig.sum()), sum_rand=float(rand.sum()),
                          max_orig=float(orig.max()), max_rand=float(rand.max())))

    add_pair("gauss_300x150", "Gaussian 300x150 default_rng(201)", gaussian(np.random.default_rng(201), 300, 150), 1201)
    add_pair("pareto_mu2_400x200", "Pareto mu=2 400x200 default_rng(202)", pareto(np.random.default_rng(202), 400, 200, 2.0), 1202)
    add_pair("spiked_r2_500x250", "Gaussian 500x250 + rank-2 (3,5) default_rng(203)",
             spiked(np.random.default_rng(203), 500, 250, [3.0, 5.0]), 1203)
    add_pair("student_t2_600x200", "Student-t df=2 600x200 default_rng(204)",
             student_t(np.random.default_rng(204), 600, 200, 2.0), 1204)
    add_pair("trained_fc1", "trained DigitsNet fc1.weight (256x288)", sd["fc1.weight"], 1205)
    add_pair("trained_conv2", "trained DigitsNet conv2.weight, per-slice permutation, pooled x1/2",
             sd["conv2.weight"], 1206, conv=True)
    # a deliberately unequal-sum pair: shows scipy.stats.entropy's normalisation of m
    rng = np.random.default_rng(205)
    W = gaussian(rng, 300, 150)
    orig = esd_raw(W)
    rand = 3.0 * esd_raw(permute_entries(W, np.random.default_rng(1207)))
    arrays["unequal_sums__orig"] = orig
    arrays["unequal_sums__rand"] = rand
    pairs.append(dict(name="unequal_sums", description="Gaussian 300x150 default_rng(205); 'rand' = 3 x the "
                      "permuted spectrum (permutation default_rng(1207)): sums differ, so WW's value differs "
                      "from the normalise-first JS", n=int(len(orig)), permutation_seed=1207,
                      rand_distance=float(RMT_Util.jensen_shannon_distance(orig, rand)),
                      js_normalized_first=js_normalized_first(orig, rand),
                      sum_orig=float(orig.sum()), sum_rand=float(rand.sum()),
                      max_orig=float(orig.max()), max_rand=float(rand.max())))

    # --- detX
    detx = []

    def add_detx(name, desc, evals):
        evals = np.sort(np.asarray(evals, dtype=np.float64))
        # exactly WeightWatcher.apply_detX
        ev_r, Wscale = RMT_Util.rescale_eigenvalues(evals)
        num, idx = RMT_Util.detX_constraint(ev_r, rescale=False)
        val_unrescaled = ev_r[idx]
        val = RMT_Util.un_rescale_eigenvalues(ev_r, Wscale)[idx]
        arrays[f"detx__{name}"] = evals
        detx.append(dict(name=name, description=desc, n=int(len(evals)), detX_num=int(num), detX_idx=int(idx),
                         detX_val=float(val), detX_val_unrescaled=float(val_unrescaled), Wscale=float(Wscale)))

    add_detx("gauss_400x200", "Gaussian 400x200 default_rng(301)", esd_raw(gaussian(np.random.default_rng(301), 400, 200)))
    add_detx("pareto_mu2_500x250", "Pareto mu=2 500x250 default_rng(302)", esd_raw(pareto(np.random.default_rng(302), 500, 250, 2.0)))
    add_detx("spiked_r3_600x300", "Gaussian 600x300 + rank-3 (2,3,4) default_rng(303)",
             esd_raw(spiked(np.random.default_rng(303), 600, 300, [2.0, 3.0, 4.0])))
    add_detx("trained_fc1", "trained DigitsNet fc1.weight", esd_raw(sd["fc1.weight"]))
    add_detx("trained_conv2", "trained DigitsNet conv2.weight (pooled, x1/2)", ww_layer_esd(sd["conv2.weight"]))
    rng = np.random.default_rng(304)
    add_detx("never_below_one", "one tiny value + 49 values ~1: the tail product never drops below 1 "
             "(WW then returns num=len(evals), idx=1)", np.concatenate([[1e-3], 1.0 + 0.01 * rng.uniform(size=49)]))

    # --- num_traps / rand_num_spikes from analyze(randomize=True, mp_fit=True)
    traps = []

    def planted(N, M, seed, entries):
        rng = np.random.default_rng(seed)
        W = rng.standard_normal((N, M)).astype(np.float32)
        std = float(W.std())
        for (i, j, mult) in entries:
            W[i, j] = np.float32(mult * std)
        return W

    trap_specs = [
        ("planted50_400x200", "Gaussian 400x200 default_rng(401), W[17,42] = 50*std", 400, 200, 401, [(17, 42, 50.0)]),
        ("planted20_400x200", "Gaussian 400x200 default_rng(402), W[5,150] = 20*std", 400, 200, 402, [(5, 150, 20.0)]),
        ("planted30x2_300x150", "Gaussian 300x150 default_rng(403), W[10,20]=30*std, W[200,100]=-30*std",
         300, 150, 403, [(10, 20, 30.0), (200, 100, -30.0)]),
        ("planted50_200x200", "Gaussian 200x200 (Q=1: WW's quarter-circle path) default_rng(404), W[3,7]=50*std",
         200, 200, 404, [(3, 7, 50.0)]),
        ("clean_400x200", "Gaussian 400x200 default_rng(405), no planted entry", 400, 200, 405, []),
        ("clean_200x200", "Gaussian 200x200 default_rng(406), no planted entry", 200, 200, 406, []),
    ]
    for name, desc, N, M, seed, entries in trap_specs:
        W = planted(N, M, seed, entries)
        arrays[f"traps__{name}"] = W
        lin = nn.Linear(M, N, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
        model = nn.Sequential(lin)
        runs = []
        for r in range(3):
            np.random.seed(5000 + 10 * seed + r)   # WW shuffles with the global numpy RNG
            det = quiet(ww.WeightWatcher(model=model).analyze, randomize=True, mp_fit=True)
            row = {k: det.iloc[0][k] for k in det.columns}
            runs.append(dict(np_random_seed=5000 + 10 * seed + r,
                             **{k: row[k] for k in ["rand_num_spikes", "num_traps", "rand_sigma_mp",
                                                    "rand_mp_softrank", "rand_W_scale", "rand_bulk_max",
                                                    "rand_bulk_min", "max_rand_eval", "rand_distance",
                                                    "ww_softrank", "ww_maxdist"]}))
        base = {k: row[k] for k in ["N", "M", "Q", "num_evals", "lambda_max", "num_spikes", "sigma_mp",
                                    "mp_softrank", "W_scale", "bulk_max", "bulk_min", "alpha", "xmin", "D"]}
        traps.append(dict(name=name, description=desc, shape=[N, M], planted=[list(e) for e in entries],
                          npz_key=f"traps__{name}", mp_fit_original=base,
                          rand_num_spikes=[rr["rand_num_spikes"] for rr in runs], runs=runs))
        print(f"  traps {name:22s} num_spikes={base['num_spikes']} sigma_mp={base['sigma_mp']:.4f} "
              f"rand_num_spikes={[rr['rand_num_spikes'] for rr in runs]}")

    np.savez_compressed(os.path.join(HERE, "ww077_randomize.npz"), **arrays)
    doc = dict(
        ww_version=ww.__version__,
        npz="ww077_randomize.npz",
        rand_distance=dict(
            function="weightwatcher.RMT_Util.jensen_shannon_distance(orig, rand) on the ascending raw spectra",
            npz_keys="<name>__orig, <name>__rand (float64, ascending)",
            note="js_normalized_first = JS of p/sum(p), q/sum(q) with m=(p+q)/2; equals WW's value when the sums agree",
            pairs=pairs),
        detX=dict(
            function="as WeightWatcher.apply_detX: ev_r, Wscale = rescale_eigenvalues(evals); "
                     "num, idx = detX_constraint(ev_r, rescale=False); detX_val = evals[idx] (original units)",
            npz_keys="detx__<name> (float64, ascending raw eigenvalues)",
            cases=detx),
        num_traps=dict(
            function="WeightWatcher(model=nn.Sequential(nn.Linear(M, N, bias=False) with weight=W)).analyze("
                     "randomize=True, mp_fit=True); np.random.seed(np_random_seed) before each run since WW "
                     "randomizes with the global numpy RNG",
            npz_keys="traps__<name> (float32, shape (N, M) = torch Linear weight (out, in))",
            cases=traps))
    dump_json(doc, "ww077_randomize.json")


# ============================================================================= (c) analyze
def run_analyze(model, train_info):
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    np.savez_compressed(os.path.join(HERE, "trained_digits_weights.npz"), **sd)

    def rows(df):
        return [{k: r[k] for k in df.columns} for _, r in df.iterrows()]

    watcher = ww.WeightWatcher(model=model)
    details = quiet(watcher.analyze)                       # all defaults (min_evals=8)
    summary = watcher.get_summary()

    np.random.seed(777)
    watcher2 = ww.WeightWatcher(model=model)
    details_full = quiet(watcher2.analyze, mp_fit=True, randomize=True, detX=True)
    summary_full = watcher2.get_summary()

    watcher3 = ww.WeightWatcher(model=model)
    details_slices = quiet(watcher3.analyze, pool=False)

    watcher4 = ww.WeightWatcher(model=model)
    details_ff = quiet(watcher4.analyze, fix_fingers="clip_xmax")

    # per-layer ESDs (recomputed the WW way) + cross-check against analyze's alpha / lambda_max
    evals_npz = {}
    checks = []
    for _, r in details.iterrows():
        name = r["longname"] if isinstance(r["longname"], str) and r["longname"] else r["name"]
        W = sd[f"{name}.weight"]
        ev = ww_layer_esd(W)
        evals_npz[name] = ev
        fit = ww_default_fit(ev)
        ok = bool(np.isclose(fit["alpha"], r["alpha"], rtol=1e-9) and np.isclose(ev.max(), r["lambda_max"], rtol=1e-6))
        checks.append(dict(layer=name, recomputed_alpha=fit["alpha"], analyze_alpha=r["alpha"], match=ok))
        assert ok, (name, fit["alpha"], r["alpha"])
    np.savez_compressed(os.path.join(HERE, "ww077_analyze_evals.npz"), **evals_npz)

    # get_ESD (documents the WW bug: no conv2d_norm there, so conv ESDs are 2x analyze's)
    get_esd = {}
    for name in ["conv2", "fc1"]:
        lid = int(details[details["longname"] == name]["layer_id"].iloc[0])
        e = np.asarray(quiet(ww.WeightWatcher(model=model).get_ESD, layer=lid))
        get_esd[name] = dict(layer_id=lid, lambda_max=float(e.max()), ratio_to_analyze=float(e.max() / evals_npz[name].max()))

    doc = dict(
        ww_version=ww.__version__, torch_version=torch.__version__,
        model=dict(cls="DigitsNet (see make_ww_reference.py)", weights_npz="trained_digits_weights.npz",
                   parameters={k: list(v.shape) for k, v in sd.items()}, **train_info),
        analyze_default=dict(call="WeightWatcher(model=model).analyze()  (min_evals=8 default, pool=True, conv2d_norm=True)",
                             details=rows(details), summary=summary),
        analyze_full=dict(call="np.random.seed(777); WeightWatcher(model=model).analyze(mp_fit=True, randomize=True, detX=True)",
                          details=rows(details_full), summary=summary_full),
        analyze_pool_false=dict(call="WeightWatcher(model=model).analyze(pool=False)  (one row per conv slice, evals x rf/2)",
                                details=rows(details_slices)),
        analyze_clip_xmax=dict(call="WeightWatcher(model=model).analyze(fix_fingers='clip_xmax')",
                               details=rows(details_ff)),
        evals_npz="ww077_analyze_evals.npz (key = layer longname; the exact ESD analyze() fitted)",
        evals_crosscheck=checks,
        get_ESD=get_esd)
    dump_json(doc, "ww077_analyze.json")
    for _, r in details.iterrows():
        print(f"  analyze {r['layer_id']} {r['longname']:6s} {r['layer_type']:20s} N={r['N']} M={r['M']} rf={r['rf']} "
              f"n={r['num_evals']} alpha={r['alpha']:.4f} xmin={r['xmin']:.4g} D={r['D']:.4f} warn={r['warning']!r}")
    print("  summary", summary)


def main():
    print("training DigitsNet ...")
    model, info = train_digits()
    print(f"  test acc {info['test_accuracy']:.4f} train acc {info['train_accuracy']:.4f}")
    print("fit_pl cases ...")
    run_fit_pl(model)
    print("analyze ...")
    run_analyze(model, info)
    print("randomize ...")
    run_randomize(model)
    print("done")


if __name__ == "__main__":
    main()
