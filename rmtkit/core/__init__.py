"""rmtkit's math: pure JAX functions on arrays (docs/math.md).

Import rule: modules here import the standard library, ``jax``, ``numpy``, ``scipy`` and
``jaxtyping``, :mod:`rmtkit.errors` and each other, nothing else: no xarray, no framework, no
other folder of rmtkit. Every public function works on one spectrum or one matrix, under
``jax.jit`` and ``jax.vmap`` (ragged spectra padded and masked), returns arrays or NamedTuples,
and takes randomness as an explicit ``key``. Options are checked by :mod:`rmtkit.core.validate`
before any computation.

- :mod:`~rmtkit.core.esd` — spectra of weight matrices (§1), padding and buckets;
- :mod:`~rmtkit.core.powerlaw` — the power-law fit, alpha (§2);
- :mod:`~rmtkit.core.tpl` — the truncated power law (§3);
- :mod:`~rmtkit.core.gof` — is the tail a power law at all? CSN p-value, likelihood ratios (§12);
- :mod:`~rmtkit.core.metrics` — scale and shape metrics (§4);
- :mod:`~rmtkit.core.mp` — the Marchenko-Pastur law and its fit (§5);
- :mod:`~rmtkit.core.traps` — randomization and correlation traps (§6);
- :mod:`~rmtkit.core.svd` — detX, SVD sharpening and smoothing (§7, §8);
- :mod:`~rmtkit.core.distance` — distances between two weight matrices (§8);
- :mod:`~rmtkit.core.vectors` — eigenvector localization (§11.1);
- :mod:`~rmtkit.core.spacing` — level-spacing statistics (§11.2);
- :mod:`~rmtkit.core.conv_fft` — singular values of convolution operators (§11.3);
- :mod:`~rmtkit.core.crosslayer` — products of consecutive layers, stacked layers (§11.4);
- :mod:`~rmtkit.core.validate` — the argument checks of every layer of rmtkit.

The public names are re-exported flat by :mod:`rmtkit` (``rmtkit.fit_pl``).
"""
