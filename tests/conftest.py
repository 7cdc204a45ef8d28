"""Shared test configuration: strict JAX promotion rules and hypothesis profiles."""

import os

import jax
from hypothesis import settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("dev", deadline=None, max_examples=25)
# CI: the same budget, derandomized so a run is reproducible (CI=true is set by the CI runner)
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True, print_blob=True)
settings.register_profile("thorough", deadline=None, max_examples=200)
_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("RMTKIT_HYPOTHESIS_PROFILE", _default))
