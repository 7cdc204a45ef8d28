"""The execution engine of the analyses: where and how a model's spectra and fits are computed.

Import rule: modules here import the standard library, ``numpy``, ``jax`` (``dask`` and
``threadpoolctl`` lazily, where used), :mod:`rmtkit.core`, :mod:`rmtkit.errors` and each other;
no xarray, no framework, and nothing from the layers above (:mod:`rmtkit.analysis` calls the
engine, never the other way). Dependencies inside the engine point one way:
``spectra -> device -> host``, ``fitter -> kernels -> stored -> executor``.

- :mod:`~rmtkit._engine.host` — float64 LAPACK spectra and the randomization on the host;
- :mod:`~rmtkit._engine.device` — the accelerator route (float32 first, float64 where needed);
- :mod:`~rmtkit._engine.spectra` — the dispatcher between the two (one layer at a time);
- :mod:`~rmtkit._engine.rows` — :class:`~rmtkit._engine.rows.Row`, the unit of work;
- :mod:`~rmtkit._engine.kernels` — the bucket kernels (one vmapped, compiled call per bucket);
- :mod:`~rmtkit._engine.fitter` — rows fitted bucket by bucket while layers are read;
- :mod:`~rmtkit._engine.stored` — compiled kernels kept on disk between processes;
- :mod:`~rmtkit._engine.executor` — local threads, BLAS threads, memory budget, dask;
- :mod:`~rmtkit._engine.progress` — the progress bar.

Results never depend on the route, the thread count or the scheduling (tested bit for bit).
"""
