"""`make run`: the whole stack in the foreground until Ctrl-C or SIGTERM.

Without DATABASE_URL / REDIS_URL it runs embedded PostgreSQL and Redis with
data under AIMUSICSTORE_DATA_DIR (default .data/), which survives restarts.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from devstack.stack import Stack, die_with_parent
from devstack.supervisor import Supervisor


def run() -> None:
    die_with_parent()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    given_key = os.environ.get("AIMUSICSTORE_ADMIN_KEY", "")
    # Fixed metrics ports by default, so a Prometheus beside `make run` can
    # scrape them (deploy/monitoring/prometheus.yaml); tests pick free ones.
    for service, port in (("VOTE", 9101), ("RANKING", 9102), ("REPUTATION", 9103), ("GATEWAY", 9901)):
        os.environ.setdefault(f"AIMUSICSTORE_{service}_METRICS_PORT", str(port))
    stack = Stack(
        data_dir=Path(os.environ.get("AIMUSICSTORE_DATA_DIR", ".data")),
        gateway_port=int(os.environ.get("AIMUSICSTORE_GATEWAY_PORT", "8080")),
        database_url=os.environ.get("DATABASE_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        admin_key=given_key,
    )
    print("starting aimusicstore (PostgreSQL, Redis, migrations, services, gateway)...", flush=True)
    try:
        stack.start()
    except RuntimeError as exc:
        sys.exit(f"could not start: {exc}\nlogs: {stack.log_dir}")
    url = stack.gateway_url.replace("127.0.0.1", "localhost")
    metrics = "\n".join(f"           {name}: {u}" for name, u in stack.metrics_urls().items())
    metrics = metrics.replace("127.0.0.1", "localhost")
    print(
        f"""
aimusicstore is up at {url}  (JSON under /api/v1, gRPC on the same port)
  charts:  {url}/   (live, in a browser)
  health:  curl {url}/health
  docs:    {url}/docs   (try any call; OpenAPI: {url}/openapi.json)
  admin key: {stack.admin_key if not given_key else "(from AIMUSICSTORE_ADMIN_KEY)"}
  try:     curl -s -X POST {url}/api/v1/agents -d '{{"id": "my-agent"}}'
  metrics: (Prometheus)
{metrics}
  logs:    {stack.log_dir}/
  data:    {stack.data_dir if stack.embedded_postgres else "(external PostgreSQL/Redis)"}
A child that dies is restarted; Ctrl-C stops everything.""",
        flush=True,
    )

    def exited() -> dict[str, int]:
        return {name: proc.returncode for name, proc in list(stack.procs.items()) if proc.poll() is not None}

    # A child that dies is restarted with backoff; only Ctrl-C or SIGTERM stops the stack.
    supervisor = Supervisor(
        exited, stack.restart, say=lambda line: print(f"{line} (log: {stack.log_dir}/)", flush=True)
    )
    while not stop.wait(1.0):
        supervisor.poll()
    print("stopping...", flush=True)
    stack.stop()
    print("stopped.", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] != "run":
        sys.exit("usage: python -m devstack run")
    run()
