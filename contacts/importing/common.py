"""What the steps of an import share: chunk sizes, the exceptions that stop
a step, and small database helpers."""

from __future__ import annotations

from django.db import connection, transaction

from contacts.importing.models import ImportIssue, ImportJob

#: Rows per transaction while staging and applying.
CHUNK_ROWS = 2000
#: Separator of list names in the file and of list ids in staged rows.
LIST_SEPARATOR = ";"
CONTACT_FIELDS = ("first_name", "last_name", "email", "custom_fields")


class Cancelled(Exception):
    """The user cancelled the job: stop and leave nothing."""


class Superseded(Exception):
    """Another worker moved the job on (a re-delivered task): stop quietly."""


def cancel_requested(job_id: int) -> bool:
    return ImportJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def add_issues(job: ImportJob, issues: list[ImportIssue]) -> None:
    if issues:
        ImportIssue.objects.bulk_create(issues)


def rows_source(model, columns: list[str], rows: list[tuple]) -> tuple[str, list]:
    """The rows as the source of an ``INSERT``: SQL and parameters.

    PostgreSQL: ``SELECT * FROM unnest(%s::type[], ...)``, one array per
    column; psycopg parses a query's placeholders in Python, so 16,000 of
    them cost more than the insert. SQLite: ``VALUES (...), (...)``.
    """
    if connection.vendor == "postgresql":
        fields = {f.column: f for f in model._meta.concrete_fields}
        casts = ", ".join(f"%s::{fields[c].db_type(connection)}[]" for c in columns)
        return f"SELECT * FROM unnest({casts})", [list(c) for c in zip(*rows, strict=True)]
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return "VALUES " + ", ".join([row] * len(rows)), [v for r in rows for v in r]


def insert_rows(model, columns: list[str], rows: list[tuple]) -> None:
    """INSERT ``rows`` into ``model``'s table, many rows per statement.

    One statement (see :func:`rows_source`) instead of ``executemany``, which
    psycopg sends as a statement per row. Slices keep each SQLite statement
    under its 32,766 parameters.
    """
    if not rows:
        return
    qn = connection.ops.quote_name
    head = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
    step = max(1, 30_000 // len(columns))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), step):
            source, params = rows_source(model, columns, rows[start : start + step])
            cursor.execute(head + source, params)


def load_rows(cursor, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Write ``rows`` into ``table`` (quoted name) the fastest way the database
    has for rows whose ids nobody needs back.

    PostgreSQL: ``COPY``, which streams the rows and adapts them in C (the
    array parameters of :func:`rows_source` are quoted in Python, one value
    at a time, under Django's client-side binding: most of an import's time
    went there). SQLite: ``executemany`` of a one-row INSERT, a loop in C
    (a statement of thousands of placeholders costs Django a regex pass).
    """
    if not rows:
        return
    qn = connection.ops.quote_name
    names = ", ".join(qn(c) for c in columns)
    if connection.vendor == "postgresql":
        with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join(["%s"] * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


class ChunkTable:
    """A temporary table that holds one chunk's rows for one set-based
    statement (``INSERT ... SELECT ... FROM`` it), on either database.

    It lives for the connection and is emptied each time it is filled, so
    another chunk's rows never join a statement (PostgreSQL also empties it
    at each commit). ``columns`` maps each column to the model field whose
    type it takes (a foreign key's type for a primary key).
    """

    def __init__(self, name: str, columns: dict[str, object]) -> None:
        qn = connection.ops.quote_name
        self.name = name
        self.columns = list(columns)
        definition = ", ".join(
            f"{qn(column)} "
            + (field.rel_db_type(connection) if field.primary_key else field.db_type(connection))
            for column, field in columns.items()
        )
        if connection.vendor == "postgresql":
            self.create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({definition}) "
            self.create += "ON COMMIT DELETE ROWS"
            self.empty = f"TRUNCATE {name}"
        else:
            self.create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({definition})"
            self.empty = f"DELETE FROM temp.{name}"

    def fill(self, cursor, rows: list[tuple]) -> None:
        """Replace the table's rows with ``rows`` (inside the caller's transaction)."""
        cursor.execute(self.create)
        cursor.execute(self.empty)
        load_rows(cursor, self.name, self.columns, rows)


def delete_in_chunks(queryset) -> None:
    """Delete ``queryset`` (rows without dependants) 10,000 rows per transaction."""
    queryset = queryset.order_by("id")
    while True:
        last = list(queryset.values_list("id", flat=True)[CHUNK_ROWS * 5 : CHUNK_ROWS * 5 + 1])
        with transaction.atomic():
            if not last:
                queryset._raw_delete(queryset.db)
                return
            queryset.filter(id__lte=last[0])._raw_delete(queryset.db)
