"""Run a reader in a child process with a memory cap, its batches streamed back over a socket.

calamine expands each sheet to a dense grid, from its first used cell to its last, before Python
sees a row. A 5 KB xlsx with one value in XFD1048576 asks for 512 GiB, and Rust aborts the
whole process when an allocation fails. An xls with one value in IV65536 takes 1 GB. Such a
workbook must cost its own unit, not the extractor and every other stream it serves.

So the in-memory decode runs in a child process with its data segment capped (``RLIMIT_DATA``).
The child sends each Arrow batch back as an IPC stream, and its memory goes away when it exits.
Children are forked by :mod:`.fork_server`, a process started once that has the readers imported
and no threads: forking it is safe while gRPC's threads run here, and a child starts in a few
milliseconds.

The child's log records are sent back and logged here, under the unit's context.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from services.common.codec import decode_batch, ipc_stream
from services.common.errors import BadInput, Transient
from services.extractor.readers.read_scope import Aborted, ReadScope, current_scope, kill

_PID: Final = "pid"
_BATCH: Final = "batch"
_LOG: Final = "log"
_OUT_OF_MEMORY: Final = "out of memory"
_END: Final = "end"
EXITED: Final = "exited"
"""Sent by the fork server once the child has exited, with its exit code."""

_MEMORY_EXITS: Final = {-signal.SIGABRT, -signal.SIGKILL}
"""How a child that ran out of memory ends: Rust aborts when an allocation fails, and the
kernel's OOM killer (a pod at its memory limit) sends SIGKILL."""

_RECORD_FIELDS: Final = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class OutOfMemory(Exception):
    """The child needed more memory than it may use."""


_IDLE_WORKERS: Final = 1
"""Workers kept between units: a warm worker reuses its heap and caches, where a new one pays
page faults for every page it touches (a third of a small workbook's decode)."""
_KEEP_FREED_MEMORY: Final = (
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
)
"""glibc keeps freed memory up to 256 MiB instead of giving it back to the kernel at once, and
serves allocations under 32 MiB (a sheet's cells, a column) from that heap rather than from new
mappings, each page of which costs a fault when first touched."""
_RECYCLE_RSS_BYTES: Final = 256 * 1024 * 1024
"""A worker that holds more than this after a unit exits rather than wait, idle, for the next."""


@dataclass(frozen=True)
class Job:
    """What a worker runs: ``read(*args)``, with at most ``memory_bytes`` of data segment."""

    read: Callable[..., Iterator[pa.RecordBatch]]
    args: tuple[Any, ...]
    memory_bytes: int
    log_level: int


class _Forward(logging.Handler):
    """Sends the worker's log records to the parent: logger, level, message and extra fields."""

    def __init__(self, channel: Connection) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        self._channel.send((_LOG, (record.name, record.levelno, record.getMessage(), extra)))


def _cap_memory(memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def _run(channel: Connection, job: Job) -> bool:
    """Run one job, its batches and its end sent on ``channel``; whether the worker stays for
    another (said in the last message, so the parent never hands a job to a worker leaving)."""
    _cap_memory(job.memory_bytes)
    logging.getLogger().setLevel(job.log_level)
    error: Exception | None = None
    try:
        for batch in job.read(*job.args):
            channel.send((_BATCH, None))
            channel.send_bytes(ipc_stream(batch))
    except MemoryError:
        channel.send((_OUT_OF_MEMORY, None))
        return False
    except Exception as exc:  # every error goes to the parent, which raises it for the unit
        error = exc
    stays = _rss_bytes() <= _RECYCLE_RSS_BYTES
    try:
        channel.send((_END, (error, stays)))
    except (pickle.PicklingError, TypeError, AttributeError):  # an exception that won't pickle
        channel.send((_END, (RuntimeError(f"{type(error).__name__}: {error}"), stays)))
    return stays


def serve_jobs(channel: Connection) -> None:
    """A worker's whole life (the fork server calls it in the forked child): jobs until the
    parent closes the channel, or until it holds too much memory."""
    channel.send((_PID, os.getpid()))
    # When memory runs short the kernel kills the process with the highest score: a worker.
    # Outside Kubernetes, or with one process killed per OOM, the service then keeps serving
    # and the unit gets an error. Kubernetes 1.28+ on cgroup v2 kills the whole container
    # (memory.oom.group): there, the decode budget is what keeps a pod under its limit.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    logging.getLogger().handlers[:] = [_Forward(channel)]
    while True:
        try:
            job = channel.recv()
        except EOFError:
            return
        if not _run(channel, job):
            return


class _ForkServer:
    """The parent's handle on the fork server process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def _launch(self) -> socket.socket:
        if self._process is not None:  # gone, or not answering: replace it
            self._process.kill()
            self._process.wait()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = str(Path(__file__).resolve().parents[3])  # where ``services`` imports from
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
            # mimalloc, Arrow's default allocator, reserves 1 GiB of address space up front,
            # which the data-segment cap counts; the system allocator takes what it uses.
            "ARROW_DEFAULT_MEMORY_POOL": "system",
            "RUST_BACKTRACE": "0",  # Rust's failed allocation: one line, not a backtrace
            # A worker's heap is kept between batches and units (a worker holding too much
            # exits after its unit): the pages a decode frees are reused, not faulted in again.
            "GLIBC_TUNABLES": ":".join(
                filter(None, (os.environ.get("GLIBC_TUNABLES"), _KEEP_FREED_MEMORY))
            ),
        }
        with theirs:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "services.extractor.readers.fork_server",
                    str(theirs.fileno()),
                ],
                pass_fds=[theirs.fileno()],
                env=env,
            )
        self._control = ours
        return ours

    def start(self) -> None:
        with self._lock:
            if self._control is None:
                self._launch()

    def fork(self) -> Connection:
        """A new worker, and the parent's end of its channel."""
        parent_end, child_end = socket.socketpair()
        with child_end, self._lock:
            control = self._control or self._launch()
            try:
                socket.send_fds(control, [b"fork"], [child_end.fileno()])
            except OSError:  # the server has died: start another, once
                socket.send_fds(self._launch(), [b"fork"], [child_end.fileno()])
        return Connection(parent_end.detach())


@dataclass
class _Worker:
    channel: Connection
    pid: int

    def kill(self) -> None:
        kill(self.pid)
        self.channel.close()


class _Pool:
    """Idle workers, and new ones forked when none is idle."""

    def __init__(self) -> None:
        self.server = _ForkServer()
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if not worker.channel.poll():  # else it has exited (its exit code is waiting)
                    return worker
                worker.channel.close()
        channel = self.server.fork()
        try:
            kind, pid = channel.recv()
        except EOFError:
            channel.close()
            raise Transient("the Excel decoder could not start") from None
        assert kind == _PID, kind
        return _Worker(channel, pid)

    def give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < _IDLE_WORKERS:
                self._idle.append(worker)
                return
        worker.channel.close()  # it exits when it sees the end of its channel


_POOL = _Pool()


def start() -> None:
    """Start the fork server now rather than on the first workbook (it imports the readers)."""
    _POOL.server.start()


def read_in_child(
    read: Callable[..., Iterator[pa.RecordBatch]],
    args: tuple[Any, ...],
    *,
    memory_bytes: int,
    file: str,
) -> Iterator[pa.RecordBatch]:
    """The batches of ``read(*args)``, run in a worker process that may use ``memory_bytes``.

    ``read`` and ``args`` must pickle (a module-level function and plain values). Raises
    :class:`OutOfMemory` when the worker needs more, and the worker's own errors as they are.
    Closing the iterator early kills the worker, and so does aborting the :class:`ReadScope`
    the iterator was first advanced in (from any thread), which raises :class:`Aborted`.
    """
    job = Job(read, args, memory_bytes, logging.getLogger("services").getEffectiveLevel())
    scope = current_scope() or ReadScope()
    worker = _POOL.take()
    try:
        worker.channel.send(job)
    except OSError:  # it exited between the check and the job: a new one
        worker.kill()
        worker = _POOL.take()
        worker.channel.send(job)
    scope.add(worker.pid)
    reusable = False
    try:
        while True:
            try:
                kind, value = worker.channel.recv()
            except EOFError:  # the fork server went away: not the file's doing, worth a retry
                raise Transient("the Excel decoder went away reading the file", file=file) from None
            if scope.aborted:
                raise Aborted()
            if kind == _BATCH:
                yield decode_batch(worker.channel.recv_bytes())
            elif kind == _LOG:
                name, level, message, extra = value
                logging.getLogger(name).log(level, "%s", message, extra=extra)
            elif kind == _END:
                error, reusable = value
                if error is not None:
                    raise error
                return
            elif kind == _OUT_OF_MEMORY or (kind == EXITED and value in _MEMORY_EXITS):
                raise OutOfMemory()
            else:
                raise BadInput(
                    f"the decoder stopped with exit code {value} reading the file", file=file
                )
    finally:
        aborted = scope.discard(worker.pid)
        if reusable and not aborted:  # an abort may have killed it after its last message
            _POOL.give_back(worker)
        else:
            worker.kill()
