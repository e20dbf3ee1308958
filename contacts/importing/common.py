"""What the steps of an import share: chunk sizes, the exceptions that stop
a step, and small database helpers."""

from __future__ import annotations

from django.db import connection, transaction

from contacts.importing.models import ImportIssue, ImportJob

#: Rows per transaction while staging and applying on SQLite, where a chunk
#: holds the database's one write lock: webhooks and dispatch wait at most
#: that long (~0.05 s).
CHUNK_ROWS = 2000
#: The same on PostgreSQL, which locks only the chunk's own rows: fewer
#: statements, temporary-table refills and commits per file.
CHUNK_ROWS_POSTGRESQL = 10_000
#: Separator of list names in the file and of list ids in staged rows.
LIST_SEPARATOR = ";"
CONTACT_FIELDS = ("first_name", "last_name", "email", "custom_fields")


def chunk_rows() -> int:
    """Rows per transaction while staging and applying, on this database."""
    return CHUNK_ROWS_POSTGRESQL if connection.vendor == "postgresql" else CHUNK_ROWS


class Cancelled(Exception):
    """The user cancelled the job: stop and leave nothing."""


class Superseded(Exception):
    """Another worker moved the job on (a re-delivered task): stop quietly."""


def cancel_requested(job_id: int) -> bool:
    return ImportJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def add_issues(job: ImportJob, issues: list[ImportIssue]) -> None:
    if issues:
        ImportIssue.objects.bulk_create(issues)


#: Parameters per SQLite statement (SQLite allows 32,766).
SQLITE_PARAMETERS = 30_000


def load_rows(cursor, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Write ``rows`` into ``table`` (quoted name) the fastest way the database
    has for rows whose ids nobody needs back.

    PostgreSQL: ``COPY``, which streams the rows and adapts them in C (the
    array parameters of a multi-row ``INSERT ... SELECT FROM unnest(...)``,
    which this replaces, are quoted in Python one value at a time under
    Django's client-side binding: most of an import's time went there).
    SQLite: multi-row ``VALUES`` (:func:`sqlite_values`).
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
        sqlite_values(f"INSERT INTO {table} ({names})", rows)


def sqlite_values(head: str, rows: list[tuple], tail: str = "") -> list[tuple]:
    """SQLite: run ``head VALUES (?, ...), (?, ...) tail`` over ``rows``, as
    many rows a statement as the parameter limit allows; the rows it returns
    (``tail`` may hold a RETURNING clause).

    On the connection's own sqlite3 handle, with ``?`` marks: Django's cursor
    rewrites every ``%s`` of a statement with a regex, which for thousands
    of marks costs more than SQLite's insert (about 2 vs 4 us a row; an
    ``executemany`` costs 5). The caller holds the transaction.
    """
    if not rows:
        return []
    raw = connection.connection
    width = len(rows[0])
    step = max(1, SQLITE_PARAMETERS // width)
    one = "(" + ", ".join(["?"] * width) + ")"
    returned: list[tuple] = []
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        sql = f"{head} VALUES {', '.join([one] * len(part))}{tail}"
        returned.extend(raw.execute(sql, [v for row in part for v in row]).fetchall())
    return returned


class ChunkTable:
    """One chunk's rows as the source of one set-based ``INSERT`` into a
    table (an upsert, its RETURNING rows wanted), the fastest way each
    database has.

    PostgreSQL: the rows are COPYed into a temporary table (for the
    connection's life, emptied at each use and at each commit), then
    ``INSERT ... SELECT`` from it. SQLite: multi-row ``VALUES``
    (:func:`sqlite_values`). ``columns`` maps each column of the rows to
    the model field whose type it takes (a foreign key's type for a
    primary key).
    """

    def __init__(self, name: str, columns: dict[str, object]) -> None:
        qn = connection.ops.quote_name
        self.name = name
        self.columns = list(columns)
        self.names = ", ".join(qn(c) for c in columns)
        definition = ", ".join(
            f"{qn(column)} "
            + (field.rel_db_type(connection) if field.primary_key else field.db_type(connection))
            for column, field in columns.items()
        )
        self.create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({definition}) ON COMMIT DELETE ROWS"
        )

    def insert(self, cursor, head: str, rows: list[tuple], fixed: list, tail: str) -> list[tuple]:
        """Run ``head <rows, each followed by the fixed values> tail``; the rows
        it returns. ``head`` names the target's columns: the chunk's columns,
        then one per fixed value."""
        if not rows:
            return []
        if connection.vendor != "postgresql":
            return sqlite_values(head, [(*row, *fixed) for row in rows], tail)
        cursor.execute(self.create)
        # Empty even inside an outer transaction (where ON COMMIT has not
        # come yet): another chunk's rows must never join this insert.
        # DELETE, not TRUNCATE: the table is empty but for that case, and
        # TRUNCATE gives it a new file and catalog entries each time.
        cursor.execute(f"DELETE FROM {self.name}")
        load_rows(cursor, self.name, self.columns, rows)
        marks = "".join(", %s" for _ in fixed)
        cursor.execute(f"{head} SELECT {self.names}{marks} FROM {self.name}{tail}", fixed)
        return cursor.fetchall()


def refresh_statistics(model) -> None:
    """PostgreSQL: ANALYZE ``model``'s table after a job wrote many rows to it.

    A job's rows are read back a chunk at a time (``WHERE job_id = %s AND
    id > %s ORDER BY id LIMIT n``). With the statistics of an empty table the
    planner expects a few rows, fetches every remaining row of the job and
    sorts them, chunk after chunk: quadratic (a 100k-row file spent a second
    there). With fresh statistics it walks the (job, id) index and stops
    after n rows. ANALYZE samples a fixed number of rows: tens of ms.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


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
