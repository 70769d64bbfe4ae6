"""Schema of the auth store and its idempotent migrations."""

from __future__ import annotations

import psycopg
from psycopg import sql

# Each migration runs once, in order, inside one transaction, recorded in bridge_schema_migrations.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE whatsapp_auth (
            company_id  text PRIMARY KEY,
            creds       jsonb NOT NULL CHECK (jsonb_typeof(creds) = 'object'),
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE whatsapp_keys (
            company_id  text NOT NULL,
            key_type    text NOT NULL,
            key_id      text NOT NULL,
            value       jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (company_id, key_type, key_id)
        );
        CREATE INDEX whatsapp_keys_type_updated ON whatsapp_keys (key_type, updated_at);
        """,
    ),
]

AUTH_TABLES = ("whatsapp_auth", "whatsapp_keys")


def migrate(conn: psycopg.Connection, *, app_role: str | None = None) -> list[int]:
    """Apply pending migrations and grant DML (no DDL) to app_role; return the versions applied."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bridge_schema_migrations "
            "(version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # Serialise concurrent migrators; the lock ends with the transaction.
        conn.execute("SELECT pg_advisory_xact_lock(4242001)")
        done = {r[0] for r in conn.execute("SELECT version FROM bridge_schema_migrations").fetchall()}
        for version, ddl in MIGRATIONS:
            if version in done:
                continue
            conn.execute(ddl)
            conn.execute("INSERT INTO bridge_schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
        if app_role:
            for table in AUTH_TABLES:
                conn.execute(
                    sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                        sql.Identifier(table), sql.Identifier(app_role)
                    )
                )
            conn.execute(
                sql.SQL("GRANT SELECT ON bridge_schema_migrations TO {}").format(sql.Identifier(app_role))
            )
    return applied
