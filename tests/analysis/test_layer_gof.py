"""rmtkit.layer_gof: one row's goodness of fit exactly as analyze(gof=True) computed it
(docs/math.md §12), its bootstrap distances included (what the per-layer figures draw)."""

import numpy as np
import pytest

import rmtkit
from rmtkit.collection import from_layers
from rmtkit.errors import InvalidArgumentError

N_BOOT = 24
KEY = 11
ROW_VARS = {
    "R_lognormal": "R_lognormal",
    "p_lognormal": "p_lognormal",
    "R_exponential": "R_exponential",
    "R_stretched_exp": "R_stretched_exp",
    "R_tpl": "R_tpl",
    "p_tpl": "p_tpl",
}


@pytest.fixture(scope="module")
def unpooled():
    """A dense layer and the two kernel slices of a convolution (each its own row and key)."""
    rng = np.random.default_rng(5)
    tree = from_layers(
        {
            "dense": rng.standard_t(2.0, size=(300, 150)),
            "conv": rng.standard_t(2.5, size=(160, 120, 2, 1)),  # 2 slices of 120 eigenvalues
        }
    )
    details = rmtkit.analyze(tree, gof=True, n_boot=N_BOOT, key=KEY, pool=False, progress=False)
    return details, rmtkit.spectra(tree, pool=False)


@pytest.mark.slow
def test_every_row_is_reproduced_bit_for_bit(unpooled):
    details, spectra = unpooled
    assert list(details["slice_id"].values) == [0, 0, 1]
    for i in range(details.sizes["layer"]):
        row = details.isel(layer=i)
        boot, comparison = rmtkit.layer_gof(
            spectra.values[i],
            layer_id=int(row.layer_id),
            slice_id=int(row.slice_id),
            key=KEY,
            n_boot=N_BOOT,
        )
        assert np.isfinite(float(row.pl_pvalue)) and int(boot.n_valid) == N_BOOT
        assert float(boot.p_value) == float(row.pl_pvalue)
        assert float(boot.se) == float(row.pl_pvalue_se)
        assert float(boot.D) == float(row.D)
        assert float(boot.p_value) == np.mean(boot.D_boot >= boot.D)
        for field, var in ROW_VARS.items():
            assert float(getattr(comparison, field)) == float(row[var]), var


@pytest.mark.slow
def test_the_key_and_the_slice_select_the_replicates(unpooled):
    details, spectra = unpooled
    evals = spectra.values[1]
    kw = dict(layer_id=int(details.layer_id[1]), n_boot=N_BOOT)
    base = rmtkit.layer_gof(evals, slice_id=0, key=KEY, **kw)[0].D_boot
    other_slice = rmtkit.layer_gof(evals, slice_id=1, key=KEY, **kw)[0].D_boot
    other_key = rmtkit.layer_gof(evals, slice_id=0, key=KEY + 1, **kw)[0].D_boot
    assert not np.array_equal(base, other_slice) and not np.array_equal(base, other_key)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_boot=0), "n_boot"),
        (dict(n_boot=2.5), "n_boot"),
        (dict(layer_id=1.0), "layer_id"),
        (dict(slice_id="0"), "slice_id"),
        (dict(key="seed"), "key"),
        (dict(xmin_method="best"), "xmin_method"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    kw = dict(layer_id=0, n_boot=4) | kwargs
    with pytest.raises(InvalidArgumentError, match=match):
        rmtkit.layer_gof(np.linspace(1.0, 2.0, 60), **kw)
