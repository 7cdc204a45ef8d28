"""``python -m rmtkit``: the command line of :mod:`rmtkit.cli`."""

from rmtkit.cli import main

raise SystemExit(main())
