"""Source audit: rmtkit's randomness comes from explicit keys and seeded generators only (no
global or unseeded random state), and no clock reaches a computation (the determinism of
tests/analysis/test_determinism.py, guarded at the source)."""

import re

import pytest
from helpers import ROOT

#: numpy's global-state API (``np.random.seed``, ``np.random.normal``, ...) is never used; the
#: explicit-generator classes are
_NP_GLOBAL = re.compile(r"np\.random\.(?!Generator\b|PCG64\b|SeedSequence\b|default_rng\b)\w+")
_UNSEEDED = re.compile(r"default_rng\(\s*\)|SeedSequence\(\s*\)")
_PY_RANDOM = re.compile(r"^\s*(import random\b|from random import)", re.M)
_CLOCK_IN_MATH = re.compile(r"\btime\.(time|perf_counter|monotonic)\(")


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(ROOT).as_posix()
        for d in ("rmtkit", "adapters")
        for p in (ROOT / d).rglob("*.py")
        if "testing" not in p.parts
    ),
)
def test_no_global_randomness_in_source(path):
    """Grep audit: no global or unseeded random state; clocks only time progress bars."""
    text = (ROOT / path).read_text()
    assert not _NP_GLOBAL.findall(text), path
    assert not _UNSEEDED.findall(text), path
    assert not _PY_RANDOM.findall(text), path
    if path != "rmtkit/_engine/progress.py":  # the progress bar shows the elapsed time
        assert not _CLOCK_IN_MATH.findall(text), path
