"""Framework adapters, installed as ``rmtkit.adapters``.

Each submodule turns one framework's models into a labeled weight collection
(an ``xarray.DataTree``, see DESIGN.md) and imports its framework lazily: importing
``rmtkit.adapters`` itself imports no framework.
"""
