"""HTML reports: the analysis of a model, or of a series of models, as one self-contained page.

:func:`report` (also ``rmtkit.report`` and ``rmtkit report MODEL ... -o report.html``) writes
one HTML file with everything inline: the summary and what each warning means, the sortable,
filterable per-layer table, the correlation flow and alpha histogram, each layer's figures in
a row that opens on click, and for several models their summaries side by side, a ranking and
the series plots. No network, no CDN, no server: the page opens from an e-mail attachment.

- :mod:`~rmtkit.report.inputs` — what is reported: Datasets, models, series;
- :mod:`~rmtkit.report.figures` — the figures, drawn by :mod:`rmtkit.plot`;
- :mod:`~rmtkit.report.svg` — matplotlib figures as compact inline SVG;
- :mod:`~rmtkit.report.page` — the HTML (with ``report.css`` and ``report.js`` beside it);
- :mod:`~rmtkit.report.build` — :func:`report`, which puts them together.

``rmtkit.report`` is both this package and the function: the package is callable, so
``rmtkit.report(details, "report.html")`` works whichever of the two the name holds.

Needs matplotlib: ``pip install 'rmtkit[plot]'``.

Import rule: an application. Modules here import the public API (``rmtkit``, its public
names), :mod:`rmtkit.errors`, :mod:`rmtkit.plot`, :mod:`rmtkit.core.validate`, and numpy,
xarray, matplotlib and jax (one jitted public function), nothing private of another folder.
"""

import sys
import types

from rmtkit.report.build import report

__all__ = ["report"]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`report` (``rmtkit.report`` may name either)."""

    def __call__(self, *args, **kwargs):
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
