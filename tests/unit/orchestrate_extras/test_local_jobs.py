"""The local ``job`` runner, run for real as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common.errors import SpecError, Terminal, Transient
from services.common.spec.model import JobTask
from services.common.spec.render import SecretResolver
from services.orchestrator.jobs import (
    OUTPUT_TAIL_BYTES,
    JobFailed,
    JobTimedOut,
    JobTransientFailure,
    run_local_job,
)


def job(code: str, **extra: object) -> JobTask:
    return JobTask.model_validate(
        {"id": "j", "type": "job", "command": [sys.executable, "-c", code], **extra}
    )


def run(task: JobTask, timeout: float = 60, **kwargs: object) -> str:
    return asyncio.run(run_local_job(task, timeout, **kwargs))  # type: ignore[arg-type]


def test_success_returns_output_tail_with_env_and_workdir(tmp_path: Path) -> None:
    code = "import os; print(os.environ['GREETING'], os.getcwd())"
    output = run(job(code, env={"GREETING": "hello"}, workdir=str(tmp_path)))
    assert output.strip() == f"hello {tmp_path}"


def test_output_is_cut_to_its_tail() -> None:
    output = run(job("import sys; sys.stdout.write('a' * 100000 + 'THE-END')"))
    assert output.endswith("THE-END")
    assert len(output) == OUTPUT_TAIL_BYTES


def test_nonzero_exit_is_terminal_with_output() -> None:
    with pytest.raises(JobFailed) as info:
        run(job("import sys; print('no report for that day', file=sys.stderr); sys.exit(3)"))
    assert isinstance(info.value, Terminal)
    assert "exited with status 3" in info.value.message
    assert "no report for that day" in info.value.message


def test_exit_75_asks_for_a_retry() -> None:
    with pytest.raises(JobTransientFailure) as info:
        run(job("import sys; print('portal busy'); sys.exit(75)"))
    assert isinstance(info.value, Transient)
    assert "portal busy" in info.value.message


def test_killed_by_signal_is_transient() -> None:
    with pytest.raises(JobTransientFailure, match="killed by signal 9"):
        run(job("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))


def test_missing_command_is_terminal() -> None:
    task = JobTask.model_validate({"id": "j", "type": "job", "command": ["/nonexistent/scraper"]})
    with pytest.raises(JobFailed, match="cannot start '/nonexistent/scraper'"):
        run(task)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _wait_dead(pid: int, timeout: float = 15) -> bool:
    """Whether ``pid`` ends within ``timeout``; a survivor is killed so no test leaks it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


# A parent that starts a child ignoring SIGTERM, writes the child's pid, then sleeps.
SPAWNS_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c',
    'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])
open(sys.argv[1], 'w').write(str(child.pid))
print('started child', flush=True)
time.sleep(300)
"""


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    task = JobTask.model_validate(
        {"id": "j", "type": "job", "command": [sys.executable, "-c", SPAWNS_CHILD, str(pid_file)]}
    )
    with pytest.raises(JobTimedOut) as info:
        run(task, timeout=3)
    assert "timed out after 3s" in info.value.message
    assert "started child" in info.value.message
    assert _wait_dead(int(pid_file.read_text())), "the child outlived its job"


def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    task = JobTask.model_validate(
        {"id": "j", "type": "job", "command": [sys.executable, "-c", SPAWNS_CHILD, str(pid_file)]}
    )

    async def scenario() -> None:
        running = asyncio.create_task(run_local_job(task, 300))
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                break
            await asyncio.sleep(0.1)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
    assert _wait_dead(int(pid_file.read_text())), "the child outlived its cancelled job"


def test_secrets_come_from_environment_or_secret_files(tmp_path: Path) -> None:
    (tmp_path / "PORTAL_PASSWORD").write_text("hunter2\n")
    task = job(
        "import os; print(os.environ['PORTAL_PASSWORD'])",
        env_from_secrets={"PORTAL_PASSWORD": "portal/password"},
    )
    environ = {"PATH": os.environ.get("PATH", "")}
    output = run(task, environ=environ, secrets=SecretResolver(environ, tmp_path))
    assert output.strip() == "hunter2"
    with pytest.raises(SpecError, match="PORTAL_PASSWORD"):
        run(task, environ=environ)


# An "orchestrator" process running one long job; the job writes its pid first.
ORCHESTRATOR = """
import asyncio, sys
from services.common.spec.model import JobTask
from services.orchestrator.jobs import run_local_job
code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"
task = JobTask.model_validate({"id": "j", "type": "job",
                               "command": [sys.executable, "-c", code, sys.argv[1]]})
asyncio.run(run_local_job(task, 300))
"""


def test_job_dies_when_the_orchestrator_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "job.pid"
    root = Path(__file__).resolve().parents[3]
    orchestrator = subprocess.Popen([sys.executable, "-c", ORCHESTRATOR, str(pid_file)], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        job_pid = int(pid_file.read_text())
        assert _alive(job_pid)
    finally:
        orchestrator.kill()  # SIGKILL: no chance to clean up
        orchestrator.wait()
    assert _wait_dead(job_pid), "the job outlived a killed orchestrator"


def test_progress_reports_output_while_the_job_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    # Prints step 1, then waits until the test has seen step 1 through progress.
    code = (
        "import pathlib, sys, time; print('step 1', flush=True); p = pathlib.Path(sys.argv[1])\n"
        "while not p.exists(): time.sleep(0.05)\n"
        "print('step 2')"
    )
    task = JobTask.model_validate(
        {"id": "j", "type": "job", "command": [sys.executable, "-c", code, str(go)]}
    )
    seen: list[str] = []

    def progress(tail: str) -> None:
        seen.append(tail)
        if "step 1" in tail:
            go.touch()

    async def scenario() -> str:
        output = await run_local_job(task, 60, progress=progress, progress_every=0.1)
        calls = len(seen)
        await asyncio.sleep(0.5)
        assert len(seen) == calls, "progress was called after the job returned"
        return output

    output = asyncio.run(scenario())
    assert seen and seen[0].strip() == "step 1"
    assert output.split() == ["step", "1", "step", "2"]
