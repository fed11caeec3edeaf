"""Applying `sql/NNN_name.sql` in order, each exactly once.

Each file runs in one transaction together with its row in the `schema_migrations` ledger, so a
file is either wholly applied and recorded or not at all. The ledger keeps each file's checksum:
migrations are append-only, and an applied file that was edited stops start-up. An advisory lock
serializes containers that start together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import psycopg2
import structlog

from daemon.records import db, queries
from daemon.settings.config import PROJECT_ROOT, Settings
from daemon.system.errors import MigrationError

log = structlog.get_logger("daemon.migrations")

SQL_DIR = PROJECT_ROOT / "sql"
MIGRATION_FILE = re.compile(r"\d{3}_[A-Za-z0-9_-]+\.sql")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    filename TEXT PRIMARY KEY,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""
LOCK = "SELECT pg_advisory_lock(%(key)s)"
UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"
APPLIED = "SELECT filename, checksum FROM schema_migrations"
RECORD = "INSERT INTO schema_migrations (filename, checksum) VALUES (%(filename)s, %(checksum)s)"


@dataclasses.dataclass(frozen=True)
class Migration:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    return [Migration(p) for p in sorted(sql_dir.iterdir()) if MIGRATION_FILE.fullmatch(p.name)]


def apply_migrations(settings: Settings, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply what is pending; return the names applied now."""
    migrations = discover(sql_dir)
    conn = db.connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(LOCK, {"key": queries.MIGRATION_LOCK_KEY})
            cur.execute(CREATE_LEDGER)
            cur.execute(APPLIED)
            applied = dict(cur.fetchall())
        done = []
        for migration in migrations:
            recorded = applied.get(migration.name)
            if recorded is not None:
                if recorded != migration.checksum:
                    raise MigrationError(
                        f"migration sql/{migration.name} was edited after it was applied "
                        "(its checksum changed); migrations are append-only: restore the file "
                        "and put the change in a new one"
                    )
                continue
            _apply_one(conn, migration)
            done.append(migration.name)
            log.info("migration_applied", file=f"sql/{migration.name}")
        log.info("migrations_up_to_date", applied_now=len(done), total=len(migrations))
        return done
    finally:
        conn.close()  # ends the session, which releases the advisory lock too


def _apply_one(conn: psycopg2.extensions.connection, migration: Migration) -> None:
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute(migration.sql)
            cur.execute(RECORD, {"filename": migration.name, "checksum": migration.checksum})
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise MigrationError(
            f"migration sql/{migration.name} failed and nothing of it was applied: {db.first_line(exc)}"
        ) from exc
    finally:
        conn.autocommit = True
