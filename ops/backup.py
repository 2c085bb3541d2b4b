"""Backups of the three service schemas, and their restore: `make backup`, `make restore FILE=...`.

    python -m ops.backup create [--out DIR]
    python -m ops.backup restore FILE [--replace]

PostgreSQL holds every fact (votes, catalog, agents, projections, snapshots);
Redis holds only what the services derive from it, plus the event stream.
So a backup is a `pg_dump` of the schemas `vote`, `ranking` and
`reputation`, and a restore is `pg_restore` followed by emptying Redis: the
services rebuild what they keep there when they start (docs/operations.md,
"Backups and restore").

The dump is taken in one snapshot, exported by a REPEATABLE READ
transaction that also counts every table's rows for the manifest, so the
counts describe exactly the rows in the dump; a restore checks them.

Where to connect: DATABASE_URL and REDIS_URL, or else the addresses the
running `make run` stack wrote to `<AIMUSICSTORE_DATA_DIR>/stack.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from redis import Redis

SCHEMAS = ("vote", "ranking", "reputation")
MANIFEST_VERSION = 1
STATE_FILE = "stack.json"


class BackupError(RuntimeError):
    """Something an operator must fix; printed without a traceback."""


@dataclass(frozen=True)
class Manifest:
    format_version: int
    created_at: str
    dump_file: str
    dump_sha256: str
    dump_bytes: int
    server_version: str
    pg_dump_version: str
    schemas: list[str]
    # schema -> alembic revision: a restore into code with other migrations
    # is then upgraded by `make migrate`, never guessed.
    migrations: dict[str, str]
    # "schema.table" -> rows, counted in the dump's own snapshot.
    row_counts: dict[str, int]

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        if data.get("format_version") != MANIFEST_VERSION:
            raise BackupError(f"{path}: manifest format {data.get('format_version')!r} is not {MANIFEST_VERSION}")
        return cls(**data)


@dataclass(frozen=True)
class Targets:
    database_url: str
    redis_url: str


def targets(env: dict[str, str] | None = None) -> Targets:
    env = dict(os.environ if env is None else env)
    database_url, redis_url = env.get("DATABASE_URL", ""), env.get("REDIS_URL", "")
    state = Path(env.get("AIMUSICSTORE_DATA_DIR", ".data")) / STATE_FILE
    if (not database_url or not redis_url) and state.exists():
        running = json.loads(state.read_text())
        database_url = database_url or running.get("database_url") or ""
        redis_url = redis_url or running.get("redis_url") or ""
    if not database_url or not redis_url:
        raise BackupError(f"set DATABASE_URL and REDIS_URL, or start the stack with `make run` (it writes {state})")
    return Targets(database_url, redis_url)


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy form (postgresql+psycopg://) back to what libpq tools take."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql")) if parts.scheme.startswith("postgres") else database_url


def pg_tool(name: str) -> str:
    """pg_dump / pg_restore: the embedded wheel's (PostgreSQL 16, which reads
    older servers too) when installed, else the one on PATH."""
    try:
        from devstack.embedded import postgres_bin_dir  # noqa: PLC0415 - optional

        candidate = postgres_bin_dir() / name
        if candidate.exists():
            return str(candidate)
    except (ImportError, RuntimeError):
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools (or `make install`)")
    return found


def _tool_version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s) ORDER BY 1, 2", (list(SCHEMAS),)
    ).fetchall()
    return [(schema, table) for schema, table in rows]


def _row_counts(conn: psycopg.Connection) -> dict[str, int]:
    counts = {}
    for schema, table in _tables(conn):
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def _migrations(conn: psycopg.Connection) -> dict[str, str]:
    heads = {}
    for schema in SCHEMAS:
        query = sql.SQL("SELECT version_num FROM {}.alembic_version").format(sql.Identifier(schema))
        heads[schema] = ",".join(sorted(row[0] for row in conn.execute(query)))
    return heads


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def create(out_dir: Path, env: dict[str, str] | None = None) -> Path:
    """Writes <out_dir>/aimusicstore-<time>.dump and its .manifest.json; returns the dump's path."""
    url = libpq_url(targets(env).database_url)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dump = out_dir / f"aimusicstore-{stamp}.dump"
    pg_dump = pg_tool("pg_dump")
    with psycopg.connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot_row = conn.execute("SELECT pg_export_snapshot(), current_setting('server_version')").fetchone()
        assert snapshot_row is not None
        snapshot, server_version = snapshot_row
        missing = [s for s in SCHEMAS if s not in {schema for schema, _ in _tables(conn)}]
        if missing:
            raise BackupError(f"schema(s) {', '.join(missing)} have no tables: is this the aimusicstore database?")
        counts, migrations = _row_counts(conn), _migrations(conn)
        # pg_dump joins our snapshot, which stays valid while this
        # transaction is open: the dump holds exactly the rows counted above.
        command = [pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}"]
        command += [f"--schema={schema}" for schema in SCHEMAS]
        result = subprocess.run([*command, f"--file={dump}", url], capture_output=True, text=True)
        if result.returncode != 0:
            raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
        conn.rollback()
    manifest = Manifest(
        format_version=MANIFEST_VERSION,
        created_at=datetime.now(UTC).isoformat(),
        dump_file=dump.name,
        dump_sha256=_sha256(dump),
        dump_bytes=dump.stat().st_size,
        server_version=server_version,
        pg_dump_version=_tool_version(pg_dump),
        schemas=list(SCHEMAS),
        migrations=migrations,
        row_counts=counts,
    )
    manifest_path(dump).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return dump


def manifest_path(dump: Path) -> Path:
    return dump.with_suffix(".manifest.json")


def _existing_rows(conn: psycopg.Connection) -> int:
    """Rows of data: a freshly migrated database holds only its version rows."""
    return sum(n for name, n in _row_counts(conn).items() if not name.endswith(".alembic_version"))


def restore(dump: Path, *, replace: bool = False, env: dict[str, str] | None = None) -> Manifest:
    """Loads a dump into an empty database, checks it against its manifest,
    and empties Redis so the services rebuild their derived state from it.

    The services must be stopped while this runs, and started after: their
    in-memory caches describe the data before the restore."""
    manifest = Manifest.load(manifest_path(dump))
    if _sha256(dump) != manifest.dump_sha256:
        raise BackupError(f"{dump} does not match its manifest's checksum: the file is damaged or not this backup")
    where = targets(env)
    url = libpq_url(where.database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        if _tables(conn):
            if not replace and _existing_rows(conn):
                raise BackupError(
                    "the database already holds aimusicstore data; restore into an empty database, "
                    "or pass --replace to drop the schemas vote, ranking and reputation first"
                )
            for schema in SCHEMAS:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    command = [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    result = subprocess.run([*command, f"--dbname={url}", str(dump)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()}")
    with psycopg.connect(url) as conn:
        restored = _row_counts(conn)
    if restored != manifest.row_counts:
        tables = manifest.row_counts.keys() | restored.keys()
        differ = sorted(k for k in tables if manifest.row_counts.get(k) != restored.get(k))
        raise BackupError(f"restored row counts differ from the manifest in: {', '.join(differ)}")
    reset_redis(where.redis_url)
    return manifest


def reset_redis(redis_url: str) -> None:
    """Empties the Redis database the services use. Everything in it is
    derived from PostgreSQL or rebuilt by the services when they start:
    cached counts are seeded from the votes table on first read, the vote
    service raises today's quota counters from the table, the ranking
    service rebuilds the trending sets, the reputation service republishes
    every weight, and the outbox relay, finding the stream gone, publishes
    again the events it still holds (consumers skip those already applied,
    by the event ids in their restored processed_events tables)."""
    client = Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("create", help="dump the three schemas, with a manifest")
    make.add_argument("--out", type=Path, default=Path("backups"), help="folder for the dump (default: backups/)")
    load = commands.add_parser("restore", help="load a dump into an empty database and reset Redis")
    load.add_argument("file", type=Path, help="the .dump file (its .manifest.json must be beside it)")
    load.add_argument("--replace", action="store_true", help="drop the three schemas first if they hold data")
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            dump = create(args.out)
            manifest = Manifest.load(manifest_path(dump))
            print(f"backup written: {dump} ({manifest.dump_bytes} bytes)")
            print(f"manifest:       {manifest_path(dump)}")
            print(f"rows:           {sum(manifest.row_counts.values())} in {len(manifest.row_counts)} tables")
        else:
            manifest = restore(args.file, replace=args.replace)
            print(f"restored {args.file} (taken {manifest.created_at}); Redis emptied.")
            print("Start the services now (`make run`): they rebuild what they keep in Redis.")
    except (BackupError, psycopg.Error, OSError) as exc:
        sys.exit(f"{args.command}: {exc}")


if __name__ == "__main__":
    main()
