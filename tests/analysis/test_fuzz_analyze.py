"""Fuzz: random option combinations into ``rmtkit.analyze`` (and ``describe`` / ``spectra``).

Each example draws a valid value for every option, then (in most examples) replaces one or two
of them by an invalid value or an invalid combination. Contract:

- invalid: :class:`rmtkit.errors.InvalidArgumentError` is raised before any weight is read;
- valid: a well-formed Dataset -- one row per selected layer (per slice with ``pool=False``),
  the variables the options ask for, no infinite value, a known ``warning`` on every row,
  alpha finite exactly where the label is an alpha label -- and every selected layer read
  exactly once, the others never.

Valid fit options come from a short fixed list: every new option set compiles a kernel (seconds),
so the combinations that compile are few and shared by all examples (the kernels are cached per
process). Randomness is derandomized with a fixed example count and no example database.
"""

import jax
import numpy as np
import pytest
import xarray as xr
from helpers import fuzz_settings
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rmtkit.analysis import analyze, describe, spectra
from rmtkit.collection import LazyArray, build_tree, weight_node
from rmtkit.errors import InvalidArgumentError

FUZZ = fuzz_settings(120)

_R = np.random.default_rng(0)
ARRAYS = {
    "enc/fc": (_R.standard_t(2.5, size=(100, 64)) * 0.1).astype(np.float32),
    "enc/conv": (_R.standard_t(3, size=(16, 8, 3, 3)) * 0.1).astype(np.float32),
    "dec/emb": (_R.normal(size=(120, 60)) * 0.05).astype(np.float32),
}
KINDS = {"enc/fc": "dense", "enc/conv": "conv2d", "dec/emb": "embedding"}
LABELS = {
    "",
    "over-trained",
    "under-trained",
    "fit-failed",
    "too-few-evals",
    "too-many-evals",
    "rank-deficient",
    "duplicate-evals",
}


def counted_tree() -> tuple[xr.DataTree, list[str]]:
    """The three layers behind loaders that log every read."""
    reads: list[str] = []

    def loader(name):
        def load():
            reads.append(name)
            return ARRAYS[name]

        return LazyArray(load, ARRAYS[name].shape, np.float32)

    nodes = [
        (name, weight_node(loader(name), kind=KINDS[name], layer_id=i, source=name))
        for i, name in enumerate(ARRAYS)
    ]
    return build_tree(nodes), reads


# --------------------------------------------------------------------------- option strategies

#: fit-option sets that compile a kernel (few, shared by all examples)
FIT_OPTIONS = [
    {},
    {"xmin_method": "median"},
    {"xmax": "force"},
    {"xmax": -2},
    {"fix_fingers": "clip_xmax"},
    {"xmin_method": "peak", "xmin_max": 10.0},
]
LAYER_FILTERS = [
    None,
    0,
    "enc/fc",
    "conv2d",
    ["dense", "embedding"],
    ["!enc"],
    [-1],
    {"include": ["enc"], "exclude": ["enc.conv"]},
    "*fc",
    np.array([0, 2]),
]


@st.composite
def valid_options(draw) -> dict:
    opts = dict(draw(st.sampled_from(FIT_OPTIONS)))
    min_evals = draw(st.integers(0, 120))
    opts.update(
        min_evals=min_evals,
        max_evals=draw(st.one_of(st.none(), st.integers(max(min_evals, 1), 400))),
        pool=draw(st.booleans()),
        randomize=draw(st.booleans()),
        mp_fit=draw(st.booleans()),
        detx=draw(st.booleans()),
        layers=draw(st.sampled_from(LAYER_FILTERS)),
        progress=draw(st.sampled_from([False, True, np.bool_(False), "always"])),
        key=draw(st.sampled_from([None, 0, 7, -3, 2**40, jax.random.key(5)])),
    )
    if draw(st.booleans()):
        opts["fit"] = "PL"
    return opts


#: one invalid value or combination per entry (merged into valid options)
INVALID = [
    {"fit": "pl"},
    {"fit": "XX"},
    {"fit": None},
    {"fit": ["PL"]},
    {"fit": np.array(["PL"])},
    {"min_evals": -1},
    {"min_evals": 1.5},
    {"min_evals": "5"},
    {"min_evals": True},
    {"min_evals": None},
    {"max_evals": 0},
    {"max_evals": -3},
    {"max_evals": 2.0},
    {"max_evals": "x"},
    {"max_evals": True},
    {"min_evals": 60, "max_evals": 50},
    {"pool": "yes"},
    {"pool": 1},
    {"pool": None},
    {"randomize": "no"},
    {"mp_fit": 0},
    {"detx": []},
    {"progress": "yes"},
    {"progress": 2},
    {"progress": None},
    {"xmin_method": "nope"},
    {"xmin_method": None},
    {"fix_fingers": "clip"},
    {"fix_fingers": True},
    {"xmax": 3},
    {"xmax": "Force"},
    {"xmax": -(2**40)},
    {"xmax": 1.5},
    {"xmax": True},
    {"xmax": np.array([-1])},
    {"xmin_max": 0},
    {"xmin_max": -1.0},
    {"xmin_max": float("nan")},
    {"xmin_max": float("inf")},
    {"xmin_max": "10"},
    {"xmin_max": True},
    {"fit": "TPL", "fix_fingers": "clip_xmax"},
    {"fit": "E_TPL", "xmax": "force"},
    {"lora": "both"},
    {"lora": None},
    {"key": "abc"},
    {"key": 1.5},
    {"key": True},
    {"key": 2**70},
    {"key": [1, 2, 3]},
    {"layers": 1.5},
    {"layers": [None]},
    {"layers": [""]},
    {"layers": "nothing*"},
    {"layers": 99},
    {"layers": {"only": [1]}},
    {"layers": {"include": [-1]}},
    {"layers": b"fc"},
    {"layers": [[0]]},
    {"layers": np.float64(1.0)},
    {"layers": np.array(5)},
]


@st.composite
def options(draw) -> tuple[dict, list[dict]]:
    """``(kwargs, invalid entries applied)``: valid options, with one or two invalid entries
    most of the time. Each entry is invalid on its own and the last one applied stays intact,
    so the kwargs are invalid exactly when an entry was applied."""
    opts = draw(valid_options())
    n_bad = draw(st.sampled_from([0, 1, 1, 2]))
    bad = [
        INVALID[i]
        for i in draw(st.lists(st.integers(0, len(INVALID) - 1), min_size=n_bad, max_size=n_bad))
    ]
    for entry in bad:
        opts.update(entry)
    return opts, bad


# --------------------------------------------------------------------------- checks


def expected_rows(tree: xr.DataTree, opts: dict) -> list[str]:
    from rmtkit.analysis import select_layers

    names = []
    for path, w in select_layers(tree, opts.get("layers")):
        rf = int(np.prod(w.shape[2:]))
        names += [path] * (1 if opts.get("pool", True) else rf)
    return names


def check_details(d: xr.Dataset, tree, reads: list[str], opts: dict) -> None:
    rows = expected_rows(tree, opts)
    assert list(d["name"].values) == rows
    too_many = {
        str(n)
        for n, w in zip(d["name"].values, d["warning"].values, strict=True)
        if w == "too-many-evals"
    }
    assert sorted(reads) == sorted(set(rows) - too_many)  # each selected layer read once
    for name in ("alpha", "log_norm", "num_evals"):
        assert name in d.data_vars
    if opts.get("randomize"):
        assert "rand_distance" in d.data_vars
    if opts.get("mp_fit"):
        assert "sigma_mp" in d.data_vars
    if opts.get("detx"):
        assert "detX_num" in d.data_vars
    if opts.get("fix_fingers"):
        assert "raw_alpha" in d.data_vars
    if not opts.get("pool", True):
        assert "slice_id" in d.coords
    for name, var in d.data_vars.items():
        if var.dtype.kind == "f":
            assert not np.isinf(var.values).any(), name
    for alpha, warning in zip(d.alpha.values, d.warning.values, strict=True):
        assert warning in LABELS, warning
        assert np.isfinite(alpha) == (warning in ("", "over-trained", "under-trained"))


# --------------------------------------------------------------------------- tests


@pytest.mark.slow
@FUZZ
@given(case=options())
def test_analyze_options(case):
    opts, bad = case
    tree, reads = counted_tree()
    event("invalid" if bad else "valid")
    if bad:
        with pytest.raises(InvalidArgumentError):
            analyze(tree, **opts)
        assert reads == [], "an invalid option was noticed only after reading weights"
        return
    check_details(analyze(tree, **opts), tree, reads, opts)


DESCRIBE_KEYS = {"layers", "min_evals", "max_evals", "pool", "lora"}


@pytest.mark.slow
@settings(FUZZ, max_examples=300)
@given(case=options())
def test_describe_and_spectra_options(case):
    """The same options, restricted to those of describe / spectra (no kernel compiles)."""
    opts, bad = case
    opts = {k: v for k, v in opts.items() if k in DESCRIBE_KEYS}
    tree, reads = counted_tree()
    if any(set(entry) <= DESCRIBE_KEYS for entry in bad):
        with pytest.raises(InvalidArgumentError):
            describe(tree, **opts)
        with pytest.raises(InvalidArgumentError):
            spectra(tree, **opts)
        assert reads == []
        return
    d = describe(tree, **opts)
    assert reads == []  # describe never reads a weight
    assert list(d["name"].values) == expected_rows(tree, opts)
    s = spectra(tree, **opts)
    assert list(s["name"].values) == list(d["name"].values)
    assert not np.isinf(s.values).any()
