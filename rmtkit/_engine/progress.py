"""A progress bar on stderr (no dependency), for anything that runs over a second."""

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``label [####----] done/total name`` on stderr, redrawn in place.

    Public as ``rmtkit.Progress`` for the applications (the report's figure rendering).

    Parameters
    ----------
    total : int
        Number of items (steps) to come.
    enabled : bool or "always"
        True: draw only when stderr is a terminal; ``"always"``: in any case; False: never.
    label : str
        Shown before the bar and in the final line.
    unit : str, default "layers"
        What an item is, in the final line ``label: <done> <unit> in <t> s``.
    """

    def __init__(self, total: int, enabled, label: str, unit: str = "layers"):
        if enabled == "always":
            self.on = True
        elif enabled is True:
            self.on = bool(getattr(sys.stderr, "isatty", lambda: False)())
        else:
            self.on = False
        self.total, self.label, self.done, self.t0 = total, label, 0, time.monotonic()
        self.unit = unit

    def step(self, name: str) -> None:
        """One more item done (``name`` is shown)."""
        self.done += 1
        if not self.on:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {name[:40]:<40}")
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        """The final line: how many items in how long."""
        if self.on:
            sys.stderr.write(
                f"\r{self.label}: {self.done} {self.unit} in "
                f"{time.monotonic() - self.t0:.1f} s{note}".ljust(90)
                + "\n"
            )
            sys.stderr.flush()
