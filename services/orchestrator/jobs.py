"""``job`` tasks run locally as subprocesses (on Kubernetes as batch/v1 Jobs)."""

from __future__ import annotations

import asyncio
import os

from services.common.errors import Terminal, Transient
from services.common.spec.model import JobTask

OUTPUT_TAIL_BYTES = 8192


class JobFailed(Terminal):
    code = "job_failed"


async def run_local_job(job: JobTask, timeout: float) -> str:
    """Run the job's command; returns the tail of its output, raises JobFailed on exit != 0."""
    env = {**os.environ, **job.env}
    try:
        process = await asyncio.create_subprocess_exec(
            *job.command,
            cwd=job.workdir,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        raise JobFailed(f"cannot start {job.command[0]!r}: {exc}") from None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise
    tail = output[-OUTPUT_TAIL_BYTES:].decode("utf-8", errors="replace")
    if process.returncode != 0:
        if process.returncode is not None and process.returncode < 0:
            raise Transient(f"job killed by signal {-process.returncode}; output: {tail}")
        raise JobFailed(f"job exited with status {process.returncode}; output: {tail}")
    return tail
