"""Import progress: a bar with rate and ETA on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Call :meth:`update` often; it writes at most every ``interval`` seconds."""

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int | None,
        unit: str,
        tty: bool,
        interval: float | None = None,
        width: int = 30,
    ) -> None:
        self.stream = stream
        self.total = total if total else None
        self.unit = unit
        self.tty = tty
        self.interval = interval if interval is not None else (0.2 if tty else 5.0)
        self.width = width
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def update(self, *, position: int, rows: int, sent: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        rate = rows / elapsed
        fraction = min(1.0, position / self.total) if self.total else None
        eta = ""
        if fraction is not None and 0 < fraction < 1 and elapsed >= 1:
            eta = f" ETA {_duration(elapsed * (1 - fraction) / fraction)}"
        if self.tty:
            if fraction is None:
                bar = f"{rows} rows"
            else:
                filled = int(self.width * fraction)
                bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction:6.1%} {rows} rows"
            self.stream.write(f"\r{bar}  {sent} sent  {rate:,.0f} rows/s{eta}\033[K")
            self._drawn = True
        else:
            done = f" ({fraction:.1%})" if fraction is not None else ""
            self.stream.write(
                f"{rows} rows read{done}, {sent} sent, {rate:,.0f} rows/s, "
                f"{_duration(elapsed)} elapsed{eta}\n"
            )
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the bar so another message gets a line of its own (the next update redraws)."""
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
            self._last = 0.0

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
