"""Starts and stops every process of the stack, in order, on free ports.

Used by `make run` (devstack.__main__) and by the integration tests, so the
tests drive exactly what a user runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devstack import embedded

REPO = Path(__file__).resolve().parent.parent

# The gateway's per-address rate limits (gateway/rate_limits.py), raised so
# far that load and test traffic, all from 127.0.0.1, never meets them: the
# benchmarks and the test stacks run with these. `make run` keeps the
# product's defaults.
RATE_LIMITS_RAISED = {
    f"AIMUSICSTORE_RATE_LIMIT_{kind}_PER_MIN": "1000000" for kind in ("REGISTRATIONS", "SUBMISSIONS", "VOTES", "READS")
}
_PR_SET_PDEATHSIG = 1


_EXEC_DYING_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    f"ctypes.CDLL('libc.so.6', use_errno=True).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies, so nothing outlives the stack."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free port outside the kernel's ephemeral range, so that an outgoing
    connection cannot take it between now and the moment a server binds it."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(15000, 32000) if not low <= p <= high] or list(range(15000, 32000))
    for port in random.sample(candidates, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # fall back to any port the kernel picks
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None, name: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name or 'process'} did not open port {port} within {timeout_s:.0f}s")


@dataclass
class Stack:
    data_dir: Path
    gateway_port: int = 8080
    database_url: str | None = None
    redis_url: str | None = None
    admin_key: str = ""
    env_overrides: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    SERVICES = ("reputation", "ranking", "vote")
    # Processes with a Prometheus endpoint: the services, and Envoy (its stats listener).
    METRICS = (*SERVICES, "gateway")

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.admin_key = self.admin_key or secrets.token_urlsafe(24)
        self.embedded_postgres = self.database_url is None
        self.embedded_redis = self.redis_url is None
        for name in ("postgres", "redis", *self.SERVICES, "sidecar_grpc", "sidecar_http", "gateway_api"):
            env_name = f"AIMUSICSTORE_{name.upper()}_PORT"
            self.ports[name] = int(os.environ.get(env_name) or free_port())
        # Metrics are on: each service's /metrics, and Envoy's stats.
        for service in self.METRICS:
            env_name = f"AIMUSICSTORE_{service.upper()}_METRICS_PORT"
            given = self.env_overrides.get(env_name) or os.environ.get(env_name)
            self.ports[f"{service}_metrics"] = int(given or free_port())
        if self.embedded_postgres:
            self.database_url = f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/aimusicstore"
        if self.embedded_redis:
            self.redis_url = f"redis://127.0.0.1:{self.ports['redis']}/0"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def metrics_urls(self) -> dict[str, str]:
        """Every Prometheus endpoint of the stack, by process."""
        urls = {s: f"http://127.0.0.1:{self.ports[f'{s}_metrics']}/metrics" for s in self.SERVICES}
        urls["gateway"] = f"http://127.0.0.1:{self.ports['gateway_metrics']}/stats/prometheus"
        return urls

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url or "",
                "REDIS_URL": self.redis_url or "",
                "AIMUSICSTORE_ADMIN_KEY": self.admin_key,
                "AIMUSICSTORE_GATEWAY_PORT": str(self.gateway_port),
                "AIMUSICSTORE_GATEWAY_HOST": "127.0.0.1",
                "AIMUSICSTORE_SIDECAR_GRPC_PORT": str(self.ports["sidecar_grpc"]),
                "AIMUSICSTORE_SIDECAR_HTTP_PORT": str(self.ports["sidecar_http"]),
                "AIMUSICSTORE_GATEWAY_API_PORT": str(self.ports["gateway_api"]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for service in self.SERVICES:
            env[f"AIMUSICSTORE_{service.upper()}_PORT"] = str(self.ports[service])
        for process in self.METRICS:
            env[f"AIMUSICSTORE_{process.upper()}_METRICS_PORT"] = str(self.ports[f"{process}_metrics"])
        env.update(self.env_overrides)
        return env

    # -- processes -------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], os_user: tuple[int, int] | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        # The child asks for SIGTERM when its parent dies (no orphans), in a
        # shim that then execs the command, not in a preexec_fn: a preexec_fn
        # makes subprocess fork() the whole parent, and in a parent running
        # grpc (the tests) the child then ran grpc's fork handlers before its
        # exec; once a restarted Redis aborted there (SIGABRT, "epoll_wait
        # error: Bad file descriptor" in its log). Without one, subprocess
        # uses vfork() and nothing runs between fork and exec. (PostgreSQL
        # started as another user than root still forks, with the
        # preexec_fn: that user may not be able to run this Python.)
        proc = subprocess.Popen(
            command if os_user else [sys.executable, "-c", _EXEC_DYING_WITH_PARENT, *command],
            env=self.env(),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=os_user[0] if os_user else None,
            group=os_user[1] if os_user else None,
            preexec_fn=die_with_parent if os_user else None,  # noqa: PLW1509 - only with a user change
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_postgres(self) -> None:
        if not self.embedded_postgres:
            return
        pg_data, socket_dir = self.data_dir / "postgres", self.data_dir / "run"
        os_user = embedded.postgres_os_user(pg_data, socket_dir)
        embedded.init_postgres(pg_data, os_user)
        command = embedded.postgres_command(pg_data, self.ports["postgres"], socket_dir)
        proc = self._spawn("postgres", command, os_user)
        wait_for_port(self.ports["postgres"], 30, proc, "postgres")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/postgres",
                    autocommit=True,
                    connect_timeout=2,
                ) as conn:
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'aimusicstore'").fetchone() is None:
                        conn.execute("CREATE DATABASE aimusicstore")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def start_redis(self) -> None:
        if not self.embedded_redis:
            return
        proc = self._spawn("redis", embedded.redis_command(self.data_dir / "redis", self.ports["redis"]))
        wait_for_port(self.ports["redis"], 15, proc, "redis")

    def migrate(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "services.common.migrate"],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"migrations failed:\n{result.stdout}\n{result.stderr}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return f"(no log for {name})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start_service(self, name: str, timeout_s: float = 60) -> None:
        proc = self._spawn(name, [sys.executable, "-m", f"services.{name}"])
        try:
            wait_for_port(self.ports[name], timeout_s, proc, f"{name} service")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; last lines of its log:\n{self.log_tail(name)}") from exc

    def start_gateway(self) -> None:
        self.start_sidecar()
        self.start_envoy()

    def start_sidecar(self) -> None:
        proc = self._spawn("sidecar", [sys.executable, "-m", "gateway.sidecar"])
        wait_for_port(self.ports["sidecar_http"], 30, proc, "gateway sidecar")

    def start_envoy(self) -> None:
        config = self.data_dir / "envoy.json"
        result = subprocess.run(
            [sys.executable, "-m", "gateway.envoy_config", str(config)],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rendering the Envoy config failed:\n{result.stderr}")
        proc = self._spawn(
            "envoy",
            [
                embedded.envoy_bin(),
                "-c",
                str(config),
                "--log-level",
                "warn",
                "--use-dynamic-base-id",
                "--concurrency",
                "2",
            ],
        )
        wait_for_port(self.gateway_port, 30, proc, "envoy")

    def wait_healthy(self, timeout_s: float = 60) -> dict:
        """Waits until /health answers 200, then until Envoy routes to every
        service again: it health-checks each one every second, and a process
        it saw down (restarted, say) gets no request until its next check."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.gateway_url}/health", timeout=2) as reply:  # noqa: S310 - our own http URL
                    health = json.loads(reply.read())
                self._wait_routed(deadline)
                return health
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"the stack did not become healthy within {timeout_s:.0f}s: {last}")

    def _wait_routed(self, deadline: float) -> None:
        """Until Envoy counts every service's processes healthy and has seen
        each pass a health check since this call (its stats listener;
        skipped when that is off). "Healthy" alone is not enough after a
        restart: a process stopped for less than three checks is still
        counted healthy, and the failed checks can mark it unhealthy just
        after this returned, for a second."""
        port = self.ports.get("gateway_metrics")
        if not port:
            return
        wanted = urllib.parse.quote(r"membership_(healthy|total)|health_check\.success")
        url = f"http://127.0.0.1:{port}/stats/prometheus?filter={wanted}"

        def read() -> dict[str, float]:
            with urllib.request.urlopen(url, timeout=2) as reply:
                lines = reply.read().decode().splitlines()
            return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and line[0] != "#"}

        def stat(name: str, service: str, default: float) -> float:
            return members.get(f'envoy_cluster_{name}{{envoy_cluster_name="{service}"}}', default)

        members = read()
        checked_before = {service: stat("health_check_success", service, 0) for service in self.SERVICES}
        while True:
            members = read()
            unhealthy = [
                service
                for service in self.SERVICES
                if stat("membership_healthy", service, 0) < stat("membership_total", service, 1)
                or stat("health_check_success", service, 1) <= checked_before[service]
            ]
            if not unhealthy:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Envoy does not route to {', '.join(unhealthy)}")
            time.sleep(0.1)

    def start(self) -> None:
        if port_in_use(self.gateway_port):
            raise RuntimeError(
                f"port {self.gateway_port} is already in use: set AIMUSICSTORE_GATEWAY_PORT to a free port"
            )
        try:
            self.start_postgres()
            self.start_redis()
            self.migrate()
            for service in self.SERVICES:
                self.start_service(service)
            self.start_gateway()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.write_state()

    @property
    def state_file(self) -> Path:
        return self.data_dir / "stack.json"

    def write_state(self) -> None:
        """Where the running stack's PostgreSQL and Redis listen, for the
        operator tools run beside it (`make backup`, `make restore`): the
        embedded ones are on ports picked at start. Given URLs are left out
        (they may carry a password; the tools read them from the environment)."""
        state = {
            "database_url": self.database_url if self.embedded_postgres else None,
            "redis_url": self.redis_url if self.embedded_redis else None,
            "gateway_url": self.gateway_url,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def stop_process(self, name: str, timeout_s: float = 10) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # PostgreSQL: SIGINT is its "fast" shutdown (SIGTERM would wait for clients).
        proc.send_signal(signal.SIGINT if name == "postgres" else signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, name: str) -> None:
        """Stops and starts one component (tests of durability use this)."""
        self.stop_process(name)
        if name == "postgres":
            self.start_postgres()
        elif name == "redis":
            self.start_redis()
        elif name in self.SERVICES:
            self.start_service(name)
        elif name == "sidecar":
            self.start_sidecar()
        elif name == "envoy":
            self.start_envoy()
        else:
            raise ValueError(f"cannot restart {name!r}")

    def stop(self) -> None:
        self.state_file.unlink(missing_ok=True)
        for name in ["envoy", "sidecar", "vote", "ranking", "reputation", "redis", "postgres"]:
            self.stop_process(name)
        for name in list(self.procs):
            self.stop_process(name)
