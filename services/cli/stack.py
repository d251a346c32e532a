"""Start the four services as separate local processes on loopback, and stop them cleanly.

Used by ``sluice up``, ``sluice run`` (when no stack is running), ``make demo`` and the
integration tests, so all of them exercise the same processes a user runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.orchestrator.auth import hash_token

SERVICES = ("extractor", "transformer", "loader", "orchestrator")


def free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports. They are held open until all are chosen: asked
    one by one, the kernel may hand out a port it just gave back, and two services (e.g. a
    metrics server and the HTTP API) would then race for it."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class Ports:
    extractor: int = 50051
    transformer: int = 50052
    loader: int = 50053
    http: int = 8080
    extractor_metrics: int = 9101
    transformer_metrics: int = 9102
    loader_metrics: int = 9103

    @classmethod
    def free(cls) -> Ports:
        """A different free loopback port for every service (see :func:`free_ports`)."""
        return cls(*free_ports(len(fields(cls))))


@dataclass
class StackConfig:
    pipelines_dir: Path
    state_url: str = "sqlite:///.sluice/state.db"
    workdir: Path = field(default_factory=Path.cwd)
    ports: Ports = field(default_factory=Ports)
    log_dir: Path = Path(".sluice/logs")
    log_format: str = "json"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    token: str | None = None
    """Operator token the orchestrator accepts; None starts it with authentication explicitly
    disabled (``SLUICE_AUTH__DISABLED=true``, loopback only, a warning in its log)."""

    @classmethod
    def private(cls, workdir: Path, pipelines_dir: Path, **overrides: Any) -> StackConfig:
        """A stack of its own (tests, benchmarks): SQLite state and logs under ``workdir``,
        free loopback ports, so several can run side by side."""
        return cls(
            pipelines_dir=pipelines_dir,
            state_url=f"sqlite:///{workdir / 'state.db'}",
            workdir=workdir,
            ports=Ports.free(),
            log_dir=Path("logs"),
            **overrides,
        )


class StackError(RuntimeError):
    pass


class LocalStack:
    """Four subprocesses: extractor, transformer, loader, orchestrator."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.http}"

    def env_for(self, service: str) -> dict[str, str]:
        p = self.config.ports
        common = {
            "SLUICE_LOG__FORMAT": self.config.log_format,
            "PYTHONUNBUFFERED": "1",
        }
        specific: dict[str, dict[str, str]] = {
            "extractor": {
                "SLUICE_GRPC__HOST": "127.0.0.1",
                "SLUICE_GRPC__PORT": str(p.extractor),
                "SLUICE_METRICS__HOST": "127.0.0.1",
                "SLUICE_METRICS__PORT": str(p.extractor_metrics),
            },
            "transformer": {
                "SLUICE_GRPC__HOST": "127.0.0.1",
                "SLUICE_GRPC__PORT": str(p.transformer),
                "SLUICE_METRICS__HOST": "127.0.0.1",
                "SLUICE_METRICS__PORT": str(p.transformer_metrics),
                "SLUICE_EXTRACTOR__TARGET": f"127.0.0.1:{p.extractor}",
            },
            "loader": {
                "SLUICE_GRPC__HOST": "127.0.0.1",
                "SLUICE_GRPC__PORT": str(p.loader),
                "SLUICE_METRICS__HOST": "127.0.0.1",
                "SLUICE_METRICS__PORT": str(p.loader_metrics),
                "SLUICE_EXTRACTOR__TARGET": f"127.0.0.1:{p.extractor}",
                "SLUICE_TRANSFORMER__TARGET": f"127.0.0.1:{p.transformer}",
            },
            "orchestrator": {
                "SLUICE_HTTP__HOST": "127.0.0.1",
                "SLUICE_HTTP__PORT": str(p.http),
                "SLUICE_STATE__URL": self.config.state_url,
                "SLUICE_PIPELINES__DIR": str(self.config.pipelines_dir),
                "SLUICE_EXTRACTOR__TARGET": f"127.0.0.1:{p.extractor}",
                "SLUICE_LOADER__TARGET": f"127.0.0.1:{p.loader}",
                **self._auth_env(),
            },
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        return {
            **env,
            **common,
            **specific[service],
            **self.config.extra_env,
            **self.config.service_env.get(service, {}),
        }

    def _auth_env(self) -> dict[str, str]:
        if self.config.token is None:
            return {"SLUICE_AUTH__DISABLED": "true"}
        tokens = [{"name": "local", "sha256": hash_token(self.config.token), "role": "operator"}]
        return {"SLUICE_AUTH__TOKENS": json.dumps(tokens)}

    def log_path(self, service: str) -> Path:
        return self.config.workdir / self.config.log_dir / f"{service}.log"

    def start_service(self, service: str) -> None:
        path = self.log_path(service)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.open("ab")
        self._logs.append(log)
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=self.config.workdir,
            env=self.env_for(service),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches the CLI, which stops us
        )

    def start(self, timeout: float = 60.0) -> None:
        for service in SERVICES:
            self.start_service(service)
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        while pending:
            for service in list(pending):
                proc = self.processes.get(service)
                if proc is not None and proc.poll() is not None:
                    raise StackError(
                        f"{service} exited with status {proc.returncode}; "
                        f"see {self.log_path(service)}:\n{self.tail(service)}"
                    )
                if self.is_healthy(service):
                    pending.discard(service)
            if pending and time.monotonic() > deadline:
                raise StackError(f"not healthy after {timeout:.0f}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.2)

    def is_healthy(self, service: str) -> bool:
        p = self.config.ports
        if service == "orchestrator":
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        port = {"extractor": p.extractor, "transformer": p.transformer, "loader": p.loader}[service]
        return grpc_healthy(f"127.0.0.1:{port}")

    def tail(self, service: str, lines: int = 20) -> str:
        path = self.log_path(service)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_service(self, service: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        proc = self.processes.get(service)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """SIGTERM in reverse order of the pull chain, so in-flight units drain first."""
        for service in reversed(SERVICES):
            self.stop_service(service)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def grpc_healthy(target: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@contextlib.contextmanager
def running_stack(config: StackConfig) -> Iterator[LocalStack]:
    stack = LocalStack(config)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
