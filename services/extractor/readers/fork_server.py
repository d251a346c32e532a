"""The process that forks decoder workers (see :mod:`.isolated`).

Started by the extractor with one end of a ``SOCK_SEQPACKET`` socket pair. Each request on it
carries the file descriptor of a socket: the server forks a worker that takes jobs on that
socket, and when the server reaps the worker it sends the exit code on the same socket, since a
worker killed by the kernel or aborted by Rust says nothing itself. The server has no threads,
so forking it is safe. It exits when the extractor closes its end.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import signal
import socket
import sys
from multiprocessing.connection import Connection

from services.extractor.readers import isolated

_REQUEST_BYTES = 64
_PRELOAD = ("services.extractor.readers.excel",)
"""Imported once here, so that every child starts with them."""


def _child(
    control: socket.socket,
    wake: tuple[int, int],
    others: dict[int, socket.socket],
    channel: socket.socket,
) -> None:
    code = 1
    try:
        control.close()
        for other in others.values():  # the server's ends of the other children's sockets
            other.close()
        for fd in wake:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        isolated.serve_jobs(Connection(channel.detach()))
        code = 0
    finally:
        os._exit(code)


def _report(children: dict[int, socket.socket]) -> None:
    """Reap the children that have exited and send each one's exit code on its socket."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        channel = children.pop(pid, None)
        if channel is None:
            continue
        # Never block the server on a reader that stopped reading: the code is a courtesy.
        channel.setblocking(False)
        with contextlib.suppress(OSError), Connection(channel.detach()) as connection:
            connection.send((isolated.EXITED, os.waitstatus_to_exitcode(status)))


def serve(control: socket.socket) -> None:
    for module in _PRELOAD:
        importlib.import_module(module)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the extractor decides when to stop
    children: dict[int, socket.socket] = {}
    while True:
        ready, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass
            _report(children)
        if control.fileno() in ready:
            request, fds, _, _ = socket.recv_fds(control, _REQUEST_BYTES, 1)
            if not request:  # the extractor has gone
                return
            if not fds:
                continue
            channel = socket.socket(fileno=fds[0])
            pid = os.fork()
            if pid == 0:
                _child(control, (wake_r, wake_w), children, channel)
            children[pid] = channel
        _report(children)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
