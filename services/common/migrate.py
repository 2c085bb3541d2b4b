"""Applies every service's migrations: `python -m services.common.migrate`.

Reads DATABASE_URL. Each services/<name>/migrations tree is applied in turn
(they touch disjoint schemas, so order does not matter).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from services.common.config import to_sqlalchemy_url

SERVICES_DIR = Path(__file__).resolve().parent.parent
SERVICE_SCHEMAS = ("reputation", "ranking", "vote")


def alembic_config(service: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    # '%' is ConfigParser's interpolation character; URLs may contain it.
    config.set_main_option("sqlalchemy.url", to_sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade_all(database_url: str) -> None:
    for service in SERVICE_SCHEMAS:
        command.upgrade(alembic_config(service, database_url), "head")


def main() -> None:
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        sys.exit("migrate: DATABASE_URL is required")
    upgrade_all(database_url)
    print("migrations applied: " + ", ".join(SERVICE_SCHEMAS), flush=True)


if __name__ == "__main__":
    main()
