"""What the reads of one stream share with the stream that runs them in worker threads.

A stream reads its unit in threads (see ``services.extractor.server``), and an in-memory
workbook decode runs in a worker process (:mod:`.isolated`). The stream sets a
:class:`ReadScope` around each read with :func:`in_scope`, and the reads find it there: the
stream can then kill the workers its reads wait on, and a read can give back the stream's
decode slot (``services.extractor.decode_budget``) when it stops needing one.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import threading
from collections.abc import Callable, Iterator


class Aborted(Exception):
    """The read was abandoned (see :class:`ReadScope`) and its worker killed."""


class ReadScope:
    """What the reads of one stream share with the stream, which runs them in other threads.

    - Their workers. A thread waiting for a worker's next batch cannot be interrupted, and the
      worker may take minutes over a big sheet, or hang on a hostile file. When the stream's
      consumer goes away, the stream aborts the scope: the workers are killed, and the waiting
      thread returns at once with :class:`Aborted` instead of holding its thread, and the
      worker its memory, until then.
    - The stream's decode slot (see ``services.extractor.decode_budget``): a read that stops
      needing a worker (an xlsx streamed instead) gives it back early through
      :func:`decode_done`.
    """

    def __init__(self, on_decode_done: Callable[[], object] | None = None) -> None:
        self._lock = threading.Lock()
        self._pids: set[int] = set()
        self.aborted = False
        self.on_decode_done = on_decode_done
        """Called (from a reading thread) when the reads need no more decode memory."""

    # Kills happen under the lock: once ``discard`` has returned False, the worker may go back
    # to the pool and serve another stream, and this scope must no longer reach it.

    def add(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            if self.aborted:
                kill(pid)

    def discard(self, pid: int) -> bool:
        """Forget a worker; whether the scope was aborted (the worker may have been killed)."""
        with self._lock:
            self._pids.discard(pid)
            return self.aborted

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            for pid in self._pids:
                kill(pid)


_SCOPE: contextvars.ContextVar[ReadScope | None] = contextvars.ContextVar(
    "sluice_read_scope", default=None
)


@contextlib.contextmanager
def in_scope(scope: ReadScope) -> Iterator[None]:
    """Reads first advanced in the body belong to ``scope`` for the rest of their life."""
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_scope() -> ReadScope | None:
    """The scope of the read running in this thread, if a stream set one."""
    return _SCOPE.get()


def decode_done() -> None:
    """Say that the current read needs no decode memory any more (it streams instead)."""
    scope = _SCOPE.get()
    if scope is not None and scope.on_decode_done is not None:
        scope.on_decode_done()


def kill(pid: int) -> None:
    """SIGKILL ``pid``, if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
