"""``job`` tasks: custom work run locally as a subprocess, or on Kubernetes as a batch/v1 Job.

Both runners keep the same contract, so a pipeline behaves the same on a laptop and in a cluster:

- exit status 0 is success; the tail of the output becomes the task's ``output``;
- exit status 75 (``EX_TEMPFAIL``) or death by a signal (killed, evicted) is a
  :class:`JobTransientFailure`: the task is retried under its retry policy;
- any other exit status is a :class:`JobFailed` (terminal, not retried): the script said no;
- running past ``timeout_seconds`` kills the job and raises :class:`JobTimedOut` (transient);
- cancelling the run kills the job: locally its whole process group, on Kubernetes the Job and
  its pods.

Error messages always carry the tail of the output, which is what a user needs to see first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Mapping

from services.common.errors import Terminal, Transient
from services.common.spec.model import JobTask
from services.common.spec.render import SecretResolver
from services.orchestrator.settings import JobSettings

log = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 8192
EXIT_RETRY = 75  # EX_TEMPFAIL from sysexits.h: "try again later"
KILL_GRACE_SECONDS = 5.0
PROGRESS_SECONDS = 2.0
Progress = Callable[[str], object]
"""Receives the output tail of a running job (e.g. writes it into the task's status)."""

# The job's first program, a few lines of Python: it asks Linux to SIGKILL it when the orchestrator
# dies (prctl PR_SET_PDEATHSIG; a SIGKILLed or OOM-killed orchestrator cannot clean up, and the
# replica adopting the run would start a second copy next to the old one), then execs the job's
# command, which keeps the pid and the signal. Not a preexec_fn: forking a process that runs gRPC
# threads and then running Python in the child can abort the child.
LAUNCHER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(137)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    print(f"cannot start {sys.argv[2]!r}: {exc.strerror or exc}", file=sys.stderr)
    sys.exit(127)
"""


class JobFailed(Terminal):
    """The job ran and failed in a way a retry will not fix."""

    code = "job_failed"


class JobTransientFailure(Transient):
    """The job failed in a way worth retrying (exit 75, killed, evicted)."""

    code = "job_transient_failure"


class JobTimedOut(Transient):
    """The job ran past its task's ``timeout_seconds`` and was killed."""

    code = "job_timed_out"


def exit_status_error(status: int, tail: str) -> JobFailed | JobTransientFailure:
    """Map a non-zero exit status (negative: killed by that signal) to the error to raise."""
    if status < 0:
        return JobTransientFailure(f"job killed by signal {-status}; output tail:\n{tail}")
    if status == EXIT_RETRY:
        return JobTransientFailure(f"job asked to be retried (exit {status}); output tail:\n{tail}")
    return JobFailed(f"job exited with status {status}; output tail:\n{tail}")


class OutputTail:
    """The last ``limit`` bytes of a stream, kept without holding the whole output."""

    def __init__(self, limit: int = OUTPUT_TAIL_BYTES) -> None:
        self.limit = limit
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.total = 0
        """Bytes seen so far (tells whether anything new arrived)."""

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self.total += len(chunk)
        while self.size - len(self.chunks[0]) >= self.limit:
            self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        return b"".join(self.chunks)[-self.limit :].decode("utf-8", errors="replace")


def local_env(job: JobTask, environ: Mapping[str, str], secrets: SecretResolver) -> dict[str, str]:
    """The subprocess environment: the orchestrator's, the job's ``env``, then its secrets.

    Locally a secret variable ``NAME`` is read from the orchestrator's environment or its secrets
    directory under the same name (on Kubernetes it comes from the named Secret's key).
    """
    env = {**environ, **job.env}
    for name in job.env_from_secrets:
        env[name] = secrets.lookup(name)
    return env


async def run_local_job(
    job: JobTask,
    timeout: float,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: SecretResolver | None = None,
    progress: Progress | None = None,
    progress_every: float = PROGRESS_SECONDS,
) -> str:
    """Run the job's command as a subprocess in its own process group.

    Args:
        job: the rendered task (``{{ ds }}`` already substituted).
        timeout: seconds before the whole process group is killed.
        environ: base environment (defaults to the orchestrator's).
        secrets: resolves ``env_from_secrets`` (defaults to the base environment).
        progress: called (on a worker thread) with the output tail while the job runs, at most
            every ``progress_every`` seconds and only when there is new output; never after
            this function has returned or raised.

    Returns:
        The tail of the combined stdout/stderr.

    Raises:
        JobFailed, JobTransientFailure, JobTimedOut: see the module docstring.
    """
    base = dict(os.environ if environ is None else environ)
    env = local_env(job, base, secrets or SecretResolver(base))
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            LAUNCHER,
            str(os.getpid()),
            *job.command,
            cwd=job.workdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: children die with it
        )
    except OSError as exc:
        raise JobFailed(f"cannot start {job.command[0]!r}: {exc.strerror or exc}") from None
    tail = OutputTail()
    log.info("job started: pid %d, command %s", process.pid, job.command)
    stop = asyncio.Event()
    reporter = asyncio.create_task(_report(tail, progress, progress_every, stop))
    try:
        await asyncio.wait_for(_drain(process, tail), timeout)
    except TimeoutError:
        await _stop(process, tail)
        raise JobTimedOut(
            f"job timed out after {timeout:g}s and was killed; output tail:\n{tail.text()}"
        ) from None
    except asyncio.CancelledError:
        await _stop(process, tail)
        raise
    finally:
        # A progress write still in flight must land before the caller writes the final status.
        stop.set()
        await asyncio.shield(reporter)
    status = process.returncode
    assert status is not None  # _drain waited for the process
    if status != 0:
        raise exit_status_error(status, tail.text())
    return tail.text()


async def _report(
    tail: OutputTail, progress: Progress | None, every: float, stop: asyncio.Event
) -> None:
    if progress is None:
        return
    reported = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set() or tail.total == reported:
            continue
        reported = tail.total
        try:
            await asyncio.to_thread(progress, tail.text())
        except Exception:
            log.exception("reporting job output failed")


async def _drain(process: asyncio.subprocess.Process, tail: OutputTail) -> None:
    assert process.stdout is not None
    while chunk := await process.stdout.read(65536):
        tail.add(chunk)
    await process.wait()


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if grace is None:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
            # The leader exited; children in the group may still linger, so kill them too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


async def _stop(process: asyncio.subprocess.Process, tail: OutputTail) -> None:
    """Kill the job, then read what it wrote last so its pipe closes and the tail is complete."""
    await _kill_group(process)
    with contextlib.suppress(TimeoutError, OSError):
        await asyncio.wait_for(_drain(process, tail), KILL_GRACE_SECONDS)


async def run_job(
    job: JobTask,
    timeout: float,
    settings: JobSettings,
    *,
    labels: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> str:
    """Run a job with the runner the settings choose (``local`` or ``kubernetes``).

    ``progress`` receives the output tail while a local job runs (see :func:`run_local_job`);
    a Kubernetes job's log is read when it ends.
    """
    if settings.runner == "kubernetes":
        from services.orchestrator.k8s_jobs import KubernetesJobRunner

        return await KubernetesJobRunner.from_settings(settings).run(job, timeout, labels=labels)
    return await run_local_job(job, timeout, progress=progress)
