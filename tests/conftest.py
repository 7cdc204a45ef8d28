"""Shared test configuration: strict JAX promotion rules and hypothesis profiles."""

import os

import jax
from hypothesis import settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("dev", deadline=None, max_examples=25)
settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True)
settings.load_profile(os.environ.get("RMTKIT_HYPOTHESIS_PROFILE", "dev"))
