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


def insert_rows(model, columns: list[str], rows: list[tuple]) -> None:
    """INSERT ``rows`` into ``model``'s table, many rows per statement.

    One multi-row statement instead of ``executemany``: psycopg sends
    ``executemany`` as one statement per row; SQLite takes either. Slices
    keep each statement under SQLite's 32,766 parameters.
    """
    if not rows:
        return
    qn = connection.ops.quote_name
    head = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) VALUES "
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    step = max(1, 30_000 // len(columns))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            cursor.execute(head + ", ".join([row] * len(part)), [v for r in part for v in r])


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
