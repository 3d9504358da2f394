"""Byte-exact identity for key records: the collation of ``scope`` and ``key`` on each database.

MariaDB's and MySQL's default collations (``utf8mb4_general_ci``, ``utf8mb4_0900_ai_ci``) fold
case and accents, and the MariaDB ones also pad trailing spaces, so ``Order-ABC`` and
``order-abc`` would share one record and one stored response. The identity columns use a binary
collation without padding there. PostgreSQL's database collation is always deterministic (equal
means equal bytes) and SQLite compares with ``BINARY`` unless told otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

MARIADB_EXACT = "utf8mb4_nopad_bin"
MYSQL_EXACT = "utf8mb4_0900_bin"

#: Pairs that an inexact collation calls equal: case, a trailing space, an accent.
FOLDED_PAIRS = (("a", "A"), ("a", "a "), ("e", "\u00e9"))


def exact_collation(connection: BaseDatabaseWrapper) -> str | None:
    """Return the collation that compares text byte for byte on ``connection``, ``None`` for its default."""
    if connection.vendor != "mysql":
        return None
    return MARIADB_EXACT if connection.mysql_is_mariadb else MYSQL_EXACT  # type: ignore[attr-defined]


class ExactCharField(models.CharField):  # type: ignore[type-arg]
    """A ``CharField`` whose values compare byte for byte on every database (an identity column)."""

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        """Return the column's parameters, with the exact collation where the default folds."""
        parameters: dict[str, Any] = super().db_parameters(connection)
        parameters["collation"] = exact_collation(connection) or self.db_collation
        return parameters


def inexact_columns(
    connection: BaseDatabaseWrapper, table: str, columns: tuple[str, ...]
) -> list[str]:
    """Return the names of ``columns`` in ``table`` that compare case-, space- or accent-insensitively.

    The collation in force is read from the catalogue and tried on :data:`FOLDED_PAIRS`, so any
    collation is judged by what it does, not by its name.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME IN %s",
                [table, columns],
            )
            collations = dict(cursor.fetchall())
            template = "SELECT _utf8mb4%s COLLATE {0} = _utf8mb4%s COLLATE {0}"
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT a.attname, c.collname FROM pg_attribute a "
                "JOIN pg_collation c ON c.oid = a.attcollation "
                "WHERE a.attrelid = %s::regclass AND a.attname = ANY(%s)",
                [connection.ops.quote_name(table), list(columns)],
            )
            collations = {name: f'"{collation}"' for name, collation in cursor.fetchall()}
            template = "SELECT %s::text COLLATE {0} = %s::text COLLATE {0}"
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table]
            )
            row = cursor.fetchone()
            ddl = row[0] if row else ""
            collations = {
                column: match.group(1)
                for column in columns
                if (match := re.search(rf'"{column}"[^,]*?COLLATE\s+(\w+)', ddl, re.IGNORECASE))
            }
            template = "SELECT %s = %s COLLATE {0}"
        else:
            return []
        folding = []
        for column in columns:
            collation = collations.get(column)
            if collation is None:
                continue
            if not re.fullmatch(r'"?[\w.\-]+"?', collation):
                folding.append(column)
                continue
            for left, right in FOLDED_PAIRS:
                cursor.execute(template.format(collation), [left, right])
                if cursor.fetchone()[0]:
                    folding.append(column)
                    break
        return folding
