"""What every server-backed test tier shares: a database of its own on a given
PostgreSQL, and the admin key the test stacks use."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable

import psycopg

ADMIN_KEY = "integration-admin-key-" + secrets.token_hex(8)


def fresh_database(base_url: str) -> tuple[str, Callable[[], None]]:
    """A new empty database beside `base_url`'s, and how to drop it."""
    name = f"aimusicstore_test_{uuid.uuid4().hex[:10]}"
    admin_url = base_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base_url.rsplit("/", 1)[0] + "/" + name, drop
