"""Progress of long loops: a tqdm bar on a terminal, plain log lines otherwise.

Training scripts and ``python -m pyode.precompile`` report progress through :func:`progress`.
On an interactive terminal, with the optional ``tqdm`` package installed (extra ``progress``),
it draws tqdm's bar with its rate and ETA. Without tqdm, or when the output is a file or a pipe
(CI logs, ``nohup``), a bar would write a carriage-return line per update, so it logs plain
lines instead through :mod:`logging` (logger ``pyode`` unless told otherwise): the count, the
rate and the ETA every ``log_every`` updates and at the end.

Design decision: tqdm is a well-kept library and is used as is where it helps; pyode does not
depend on it, so the fallback keeps the same calls (``update``, ``write``, ``close``).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["progress", "Progress"]

LOG = logging.getLogger("pyode")


def _tqdm_class() -> type | None:
    """tqdm's class, or None when the package is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:           # a closed stream
        return False


def _clock(seconds: float) -> str:
    """``seconds`` as ``m:ss`` (or ``h:mm:ss``)."""
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A counter from ``initial`` to ``total`` shown as a bar or as log lines.

    Use :func:`progress` to make one. ``update(n, **postfix)`` advances the count and sets the
    values shown beside it (e.g. ``loss=0.12``); ``write(msg)`` prints a message without
    breaking the bar; ``close()`` ends it (also on leaving a ``with`` block).

    Attributes
    ----------
    n : int
        The count so far.
    total : int
    bar : bool
        True when a tqdm bar is drawn, False for log lines.
    """

    def __init__(self, total: int, desc: str = "", initial: int = 0, log_every: int | None = None,
                 logger: logging.Logger | None = None, stream: TextIO | None = None,
                 bar: bool | None = None) -> None:
        self.total = int(total)
        self.desc = desc
        self.n = int(initial)
        self._initial = self.n
        self._logger = logger or LOG
        self._stream = sys.stderr if stream is None else stream
        tqdm = _tqdm_class()
        if bar is None:
            bar = tqdm is not None and _is_terminal(self._stream)
        if bar and tqdm is None:
            raise ImportError("a progress bar needs the optional package tqdm: "
                              "pip install tqdm (or pyode[progress])")
        self.bar = bool(bar)
        self._tqdm = (tqdm(total=self.total, initial=self.n, desc=desc, file=self._stream,
                           dynamic_ncols=True, smoothing=0.1) if self.bar else None)
        self._log_every = max(1, int(log_every or max(1, self.total // 10)))
        self._start = time.perf_counter()
        self._postfix = {}

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance the count by ``n`` and show ``postfix`` (name=value pairs) beside it."""
        self.n += int(n)
        if postfix:
            self._postfix = postfix
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix(postfix, refresh=False)
            self._tqdm.update(n)
        elif self.n % self._log_every == 0 or self.n == self.total:
            self._logger.info("%s", self.line())

    def line(self) -> str:
        """One plain line: ``desc: n/total [elapsed<eta, rate it/s] postfix``."""
        elapsed = time.perf_counter() - self._start
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else 0.0
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in self._postfix.items())
        head = f"{self.desc}: " if self.desc else ""
        return (f"{head}{self.n}/{self.total} [{_clock(elapsed)}<{_clock(eta)}, "
                f"{rate:.3g} it/s]" + (f" {extra}" if extra else ""))

    def write(self, message: str) -> None:
        """Print ``message`` on its own line (above the bar, or as a log line)."""
        if self._tqdm is not None:
            self._tqdm.write(message, file=self._stream)
        else:
            self._logger.info("%s", message)

    def close(self) -> None:
        """End the bar (no-op for log lines)."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress(total: int, desc: str = "", initial: int = 0, log_every: int | None = None,
             logger: logging.Logger | None = None, stream: TextIO | None = None,
             bar: bool | None = None) -> Progress:
    """Make a :class:`Progress` counter for a loop of ``total`` updates.

    Parameters
    ----------
    total : int
        Number of updates the loop will make in all (counting those before ``initial``).
    desc : str, optional
        Label shown before the count.
    initial : int, optional
        Count to start from (a resumed run), default 0.
    log_every : int, optional
        Without a bar: log a line every this many updates (default ``total // 10``, at least 1)
        and at the end.
    logger : logging.Logger, optional
        Without a bar: the logger of the lines (default ``logging.getLogger("pyode")``).
    stream : file, optional
        Where the bar is drawn (default ``sys.stderr``).
    bar : bool or None, optional
        Force a tqdm bar (True; ImportError without tqdm) or log lines (False). Default None:
        a bar when tqdm is installed and ``stream`` is a terminal.

    Returns
    -------
    Progress
    """
    return Progress(total, desc=desc, initial=initial, log_every=log_every, logger=logger,
                    stream=stream, bar=bar)
