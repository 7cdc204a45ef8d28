r"""Plots of spectra, fits and model-level metrics (matplotlib, works headless).

Per layer (pure inputs: eigenvalues and fits; a fit is computed only when none is given):

- :func:`plot_esd` — the ESD on log-log, lin-lin or log-lin axes with the power-law fit and
  :math:`x_{\min}` (WeightWatcher's ``esd1 .. esd3``);
- :func:`plot_pl_candidates` — KS distance D and alpha against every candidate :math:`x_{\min}`
  (``esd4``);
- :func:`plot_randomized` — the ESD of the randomized layer over the original, with the largest
  randomized eigenvalue (correlation-trap line);
- :func:`plot_mp` — the Marchenko–Pastur fit over the bulk of the spectrum rescaled to mean 1,
  with the spike edge;
- :func:`plot_detx` — the detX (ERG) tail start against the power-law :math:`x_{\min}`;
- :func:`plot_spacing` — the level spacing of the bulk against the Wigner surmise and Poisson,
  and WeightWatcher's ``deltas`` sequence;
- :func:`plot_vectors` — eigenvector localization of the bulk and the tail;
- :func:`plot_layer` — all of the above for one layer, one figure per panel;
- :func:`plot_gof` — is the tail a power law? the bootstrap distribution of D with the observed
  D (:func:`plot_gof_bootstrap`) and the tail's CCDF with the fitted alternatives
  (:func:`plot_tail_models`), docs/math.md §12.

Per model (from the :func:`rmtkit.analyze` Dataset, dim ``layer``):

- :func:`plot_correlation_flow` — alpha against ``layer_id``, marker by layer kind, one series
  per entry of any other dim (``model``, ``epoch``);
- :func:`plot_alpha_hist` — histograms of the layer alphas, one per entry of a ``model`` dim;
- :func:`plot_model` — both (and, given the weights, every layer's panels);
- :func:`plot_layers` — the per-layer panels of every analyzed layer of a model (with
  ``gof=True`` details, each tested layer's two goodness-of-fit figures too).

Every function returns :class:`matplotlib.figure.Figure` objects (or dicts of them) built
without pyplot, so nothing is shown, no global figure state is touched and no backend is
switched: it works on a headless machine and leaves an interactive session's backend alone
(Jupyter displays a returned Figure). ``savefig`` writes PNG files with predictable names:

==========================================  ===========================================
file                                        figure
==========================================  ===========================================
``<layer_id>_<name>_esd_loglog.png``        :func:`plot_esd` ``scale="loglog"``
``<layer_id>_<name>_esd_linlin.png``        :func:`plot_esd` ``scale="linlin"``
``<layer_id>_<name>_esd_loglin.png``        :func:`plot_esd` ``scale="loglin"``
``<layer_id>_<name>_pl_candidates.png``     :func:`plot_pl_candidates`
``<layer_id>_<name>_randomized.png``        :func:`plot_randomized`
``<layer_id>_<name>_mp.png``                :func:`plot_mp`
``<layer_id>_<name>_gof_bootstrap.png``     :func:`plot_gof_bootstrap` (:func:`plot_layers`)
``<layer_id>_<name>_gof_tail.png``          :func:`plot_tail_models` (:func:`plot_layers`)
``<layer_id>_<name>_detx.png``              :func:`plot_detx`
``<layer_id>_<name>_level_spacing.png``     :func:`plot_spacing` ``kind="level_spacing"``
``<layer_id>_<name>_deltas.png``            :func:`plot_spacing` ``kind="deltas"``
``<layer_id>_<name>_vector_histograms.png`` :func:`plot_vectors` ``kind="vector_histograms"``
``<layer_id>_<name>_vector_metrics.png``    :func:`plot_vectors` ``kind="vector_metrics"``
``correlation_flow.png``                    :func:`plot_correlation_flow`
``alpha_hist.png``                          :func:`plot_alpha_hist`
==========================================  ===========================================

``<name>`` is the layer path with every character outside ``[A-Za-z0-9_.-]`` replaced by
``_`` (``encoder/layer_0/attn`` -> ``encoder_layer_0_attn``); unpooled convolution slices
(``slice_id``) add ``_slice<k>`` to it.

Units: eigenvalues as :func:`rmtkit.esd` gives them (raw, :math:`\lambda = s^2`). Log axes
show the eigenvalues the power-law fit uses (:math:`\lambda > 10^{-5}`, docs/math.md §2).

Needs matplotlib: ``pip install 'rmtkit[plot]'``.

Import rule: modules here import the standard library, ``numpy``, ``matplotlib`` and
:mod:`rmtkit` itself: they compute only through the public API (``rmtkit.fit_pl``,
``rmtkit.spectra``, ...; constants from :mod:`rmtkit.core`) and never reach into another
folder's private names. :mod:`rmtkit.plot.layer` draws one layer from arrays,
:mod:`rmtkit.plot.model` a model from Datasets.
"""

from rmtkit.plot.gof import plot_gof, plot_gof_bootstrap, plot_tail_models
from rmtkit.plot.layer import (
    SPACING_KINDS,
    VECTOR_KINDS,
    plot_detx,
    plot_esd,
    plot_layer,
    plot_mp,
    plot_pl_candidates,
    plot_randomized,
    plot_spacing,
    plot_vectors,
)
from rmtkit.plot.model import plot_alpha_hist, plot_correlation_flow, plot_layers, plot_model
from rmtkit.plot.style import (
    ALPHA_HIGH,
    ALPHA_LOW,
    ANALYSIS_PANELS,
    DPI,
    FIGSIZE,
    PANELS,
    SCALES,
    layer_file_stem,
    save_figure,
)

__all__ = [
    "ALPHA_HIGH",
    "ALPHA_LOW",
    "DPI",
    "FIGSIZE",
    "ANALYSIS_PANELS",
    "PANELS",
    "SCALES",
    "SPACING_KINDS",
    "VECTOR_KINDS",
    "layer_file_stem",
    "plot_alpha_hist",
    "plot_correlation_flow",
    "plot_detx",
    "plot_esd",
    "plot_gof",
    "plot_gof_bootstrap",
    "plot_layer",
    "plot_layers",
    "plot_model",
    "plot_mp",
    "plot_pl_candidates",
    "plot_randomized",
    "plot_spacing",
    "plot_tail_models",
    "plot_vectors",
    "save_figure",
]
