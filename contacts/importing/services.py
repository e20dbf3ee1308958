"""The steps of a contact import (see :mod:`contacts.importing` for the flow).

Every state change of an :class:`ImportJob` is here. Work is done a chunk of
rows at a time, each chunk in its own short transaction, so the web, the
webhooks and the campaign engine keep writing while a big file goes in.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Count, Exists, F, Min, OuterRef
from django.db.models.functions import Greatest
from django.utils import timezone

from contacts.importing.models import (
    ImportChange,
    ImportFileChunk,
    ImportIssue,
    ImportJob,
    ImportRow,
)
from contacts.importing.reader import Table, UnreadableFile, open_table
from contacts.models import Contact, ContactList, ListMembership
from contacts.phones import PhoneNormalizer

logger = logging.getLogger("contacts.importing")

S = ImportJob.Status

#: Largest file accepted (bytes). ``CONTACT_IMPORT_MAX_BYTES`` in settings.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: Rows per transaction while staging and applying.
CHUNK_ROWS = 2000
#: Bytes per stored piece of the uploaded file.
FILE_CHUNK = 1024 * 1024
#: One apply task stops after this many seconds and queues the next one.
APPLY_SLICE = 60.0

PHONE_ALIASES = {"phone", "mobile", "phone_number", "mobile_number", "number", "msisdn", "cell"}
COLUMN_ALIASES = {
    "firstname": "first_name",
    "given_name": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "e-mail": "email",
    "email_address": "email",
    "list": "lists",
}
CONTACT_FIELDS = ("first_name", "last_name", "email", "custom_fields")
TEXT_LIMITS = {"first_name": 100, "last_name": 100, "email": 254}
LIST_SEPARATOR = ";"
STAGED_COLUMNS = (
    "job_id",
    "line",
    "phone",
    "first_name",
    "last_name",
    "email",
    "custom_fields",
    "list_ids",
)
KNOWN_COLUMNS = {"phone", "first_name", "last_name", "email", "lists", "custom_fields"}
#: Memberships per INSERT (3 parameters each; SQLite allows 32,766).
MEMBERSHIPS_PER_INSERT = 5000


def max_upload_bytes() -> int:
    return int(getattr(settings, "CONTACT_IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"  # pragma: no cover


def too_big_message(size: int) -> str:
    limit = max_upload_bytes()
    return (
        f"The file is {human_size(size)}; the largest accepted is {human_size(limit)}. "
        "Split it into smaller files and import them one after the other."
    )


class _Cancelled(Exception):
    pass


class _Superseded(Exception):
    """Another worker moved the job on (a re-delivered task): stop quietly."""


# ---------------------------------------------------------------- create


def import_create(
    *,
    upload,
    user,
    encoding: str = ImportJob.Encoding.AUTO,
    region: str = "",
    target_list: ContactList | None = None,
) -> ImportJob:
    """Keep an uploaded file as a new import job and queue its staging.

    ``upload`` is a Django ``UploadedFile``. Raises ``ValidationError`` for a
    file over :func:`max_upload_bytes` or an empty one. The file is stored
    in pieces, each in its own transaction; the job is queued only once
    the whole file is stored.
    """
    size = upload.size or 0
    if size > max_upload_bytes():
        raise ValidationError(too_big_message(size), code="too_big")
    if size == 0:
        raise ValidationError("The file is empty: choose a CSV or XLSX file with a header row.")
    if encoding not in ImportJob.Encoding.values:
        raise ValidationError(f"Unknown encoding {encoding!r}.")
    job = ImportJob.objects.create(
        file_name=(upload.name or "upload")[:255],
        file_size=size,
        encoding=encoding,
        region=(region or "").upper()[:2],
        target_list=target_list,
        created_by=user if getattr(user, "pk", None) else None,
        status=S.FAILED,  # until the whole file is stored
        status_detail="The upload did not finish.",
    )
    seq = 0
    buffer = b""
    for piece in upload.chunks(FILE_CHUNK):
        buffer += piece
        while len(buffer) >= FILE_CHUNK:
            ImportFileChunk.objects.create(job=job, seq=seq, data=buffer[:FILE_CHUNK])
            buffer, seq = buffer[FILE_CHUNK:], seq + 1
    if buffer:
        ImportFileChunk.objects.create(job=job, seq=seq, data=buffer)
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).update(
            status=S.QUEUED, status_detail="", updated_at=timezone.now()
        )
        _enqueue("contacts.importing.tasks.stage_import", job.pk)
    job.refresh_from_db()
    logger.info(
        "import %s queued: %s (%s bytes) by %s", job.pk, job.file_name, size, job.created_by_id
    )
    return job


def _enqueue(task: str, job_id: int) -> None:
    transaction.on_commit(lambda: _async(task, job_id))


def _async(task: str, job_id: int) -> None:
    from django_q.tasks import async_task

    async_task(task, job_id, task_name=f"contact import {job_id}", group=f"import-{job_id}")


@contextmanager
def _spooled_file(job: ImportJob) -> Iterator[BinaryIO]:
    """The job's file in a temporary file on this worker's disk."""
    with tempfile.TemporaryFile() as raw:
        last = -1
        while True:
            piece = (
                ImportFileChunk.objects.filter(job=job, seq__gt=last)
                .order_by("seq")
                .values_list("seq", "data")
                .first()
            )
            if piece is None:
                break
            last, data = piece
            raw.write(bytes(data))
        raw.seek(0)
        yield raw


# ---------------------------------------------------------------- stage


def import_stage(*, job_id: int) -> ImportJob:
    """Read and check the job's file into staged rows and issues (a task).

    Claims the job (queued → staging) with a conditional update, so a
    re-delivered task does nothing. Ends in ``ready`` (no issue), ``invalid``
    (issues; staged rows dropped), ``cancelled`` or ``failed``; the file is
    dropped in every case.
    """
    claimed = ImportJob.objects.filter(pk=job_id, status=S.QUEUED).update(
        status=S.STAGING, updated_at=timezone.now()
    )
    job = ImportJob.objects.get(pk=job_id)
    if not claimed:
        return job
    try:
        with _spooled_file(job) as raw:
            try:
                table = open_table(raw, encoding=job.encoding)
            except UnreadableFile as exc:
                _add_issues(job, [ImportIssue(job=job, line=1, reason=str(exc))])
            else:
                ImportJob.objects.filter(pk=job.pk).update(
                    detected_encoding=table.encoding or table.format.upper()
                )
                _Stager(job, table).run()
        if not _issue_count(job):
            _report_duplicates(job)
    except _Cancelled:
        _drop_staging(job, files=True)
        return _finish(job, S.CANCELLED, "Cancelled while the file was being read.")
    except UnreadableFile as exc:
        _add_issues(job, [ImportIssue(job=job, line=1, reason=str(exc))])
    except Exception as exc:
        logger.exception("import %s: staging failed", job_id)
        _drop_staging(job, files=True)
        return _finish(job, S.FAILED, f"The file could not be read: {exc}")
    _drop_files(job)
    issues = _issue_count(job)
    if issues:
        _drop_staging(job)
        return _finish(
            job,
            S.INVALID,
            f"{issues} problem{'s' if issues != 1 else ''} found: nothing was imported. "
            "Fix the file and upload it again.",
        )
    staged = ImportRow.objects.filter(job=job)
    total = staged.count()
    existing = staged.filter(Exists(Contact.objects.filter(phone=OuterRef("phone")))).count()
    ImportJob.objects.filter(pk=job.pk).update(rows_total=total, rows_new=total - existing)
    if not total:
        return _finish(job, S.INVALID, "The file has a header but no rows: nothing to import.")
    return _finish(job, S.READY, "", final=False)


def _issue_count(job: ImportJob) -> int:
    return ImportIssue.objects.filter(job=job).count()


def _finish(job: ImportJob, status: str, detail: str, *, final: bool = True) -> ImportJob:
    now = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(
        status=status,
        status_detail=detail,
        issues_total=_issue_count(job),
        updated_at=now,
        finished_at=now if final else None,
    )
    job.refresh_from_db()
    logger.info("import %s: %s %s", job.pk, status, detail)
    return job


def _add_issues(job: ImportJob, issues: list[ImportIssue]) -> None:
    if issues:
        ImportIssue.objects.bulk_create(issues)


def _canonical_column(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    if key in PHONE_ALIASES:
        return "phone"
    return COLUMN_ALIASES.get(key, key)


class _Stager:
    """Stages the rows of one table (one instance per run)."""

    def __init__(self, job: ImportJob, table: Table) -> None:
        self.job = job
        self.table = table
        self.normalize = PhoneNormalizer(job.region or None)
        self.list_ids: dict[str, int | None] = {}
        self.rows: list[tuple] = []
        self.issues: list[ImportIssue] = []
        self.rows_read = 0
        self.issues_total = 0
        self.insert_sql = _insert_sql(
            ImportRow,
            [*STAGED_COLUMNS],
        )

    def issue(self, line: int, column: str, value: str, reason: str) -> None:
        self.issues.append(
            ImportIssue(
                job_id=self.job.pk,
                line=line,
                column=column[:100],
                value=(value or "")[:255],
                reason=reason[:500],
            )
        )

    def header(self) -> bool:
        """Map the header; False (with issues) when it cannot be used."""
        names = [_canonical_column(h) for h in self.table.header]
        seen: dict[str, int] = {}
        for position, name in enumerate(names):
            if name and name in seen:
                self.issue(
                    1,
                    self.table.header[position],
                    "",
                    f"The column “{name}” appears twice (columns {seen[name] + 1} and "
                    f"{position + 1}): keep one.",
                )
            seen.setdefault(name, position)
        if "phone" not in seen:
            self.issue(
                1,
                "",
                ", ".join(self.table.header)[:255],
                "No phone column: the first line must name the columns, and one of them "
                "must be “phone” (or mobile, number).",
            )
        self.names = names
        self.phone_at = seen.get("phone")
        self.known = {
            name: seen[name]
            for name in ("first_name", "last_name", "email", "lists", "custom_fields")
            if name in seen
        }
        self.extra = [
            (position, self.table.header[position].strip())
            for position, name in enumerate(names)
            if name and name not in KNOWN_COLUMNS and seen[name] == position
        ]
        self.width = len(names)
        columns = [name for name in ("first_name", "last_name", "email") if name in seen]
        if self.extra or "custom_fields" in seen:
            columns.append("custom_fields")
        ImportJob.objects.filter(pk=self.job.pk).update(columns=columns)
        self.job.columns = columns
        return not self.issues

    def run(self) -> None:
        if not self.header():
            self.flush(force=True)
            return
        for line, cells in self.table.rows:
            self.row(line, cells)
            if len(self.rows) + len(self.issues) >= CHUNK_ROWS:
                self.flush()
        self.flush(force=True)

    def row(self, line: int, cells: list[str]) -> None:
        if not any(cells):
            return  # a blank line
        self.rows_read += 1
        ok = True
        if len(cells) > self.width and any(cells[self.width :]):
            ok = False
            self.issue(
                line,
                "",
                ",".join(cells[self.width :]),
                f"This row has {len(cells)} cells but the header names {self.width} columns: "
                "a value probably contains the separator; put it in quotes.",
            )
        raw_phone = cells[self.phone_at].strip() if self.phone_at < len(cells) else ""
        try:
            phone = self.normalize(raw_phone)
        except ValidationError as exc:
            ok = False
            phone = ""
            self.issue(line, self.table.header[self.phone_at], raw_phone, exc.messages[0])
        values = {}
        for name, limit in TEXT_LIMITS.items():
            at = self.known.get(name)
            if at is None:
                continue
            value = cells[at].strip() if at < len(cells) else ""
            if len(value) > limit:
                ok = False
                self.issue(line, name, value, f"Longer than {limit} characters.")
            elif name == "email" and value:
                try:
                    validate_email(value)
                except ValidationError:
                    ok = False
                    self.issue(line, name, value, "Not an email address.")
            values[name] = value
        custom: dict[str, str] = {}
        at = self.known.get("custom_fields")
        if at is not None and at < len(cells) and cells[at].strip():
            try:
                parsed = json.loads(cells[at])
            except json.JSONDecodeError as exc:
                parsed = None
                ok = False
                self.issue(line, "custom_fields", cells[at], f"Not JSON: {exc.msg}.")
            if isinstance(parsed, dict):
                custom.update(parsed)
            elif parsed is not None:
                ok = False
                self.issue(line, "custom_fields", cells[at], 'Must be a JSON object: {"a": "b"}.')
        for position, name in self.extra:
            if position < len(cells) and cells[position] != "":
                custom[name] = cells[position]
        list_ids = self.lists(line, cells)
        if list_ids is None:
            ok = False
        if ok:
            self.rows.append(
                (
                    self.job.pk,
                    line,
                    phone,
                    values.get("first_name", ""),
                    values.get("last_name", ""),
                    values.get("email", ""),
                    json.dumps(custom, ensure_ascii=False) if custom else "",
                    LIST_SEPARATOR.join(str(i) for i in list_ids),
                )
            )

    def lists(self, line: int, cells: list[str]) -> list[int] | None:
        at = self.known.get("lists")
        if at is None or at >= len(cells) or not cells[at].strip():
            return []
        names = [n.strip() for n in cells[at].split(LIST_SEPARATOR) if n.strip()]
        unknown = [n for n in names if n not in self.list_ids]
        if unknown:
            found = dict(ContactList.objects.filter(name__in=unknown).values_list("name", "id"))
            for name in unknown:
                self.list_ids[name] = found.get(name)
        missing = [n for n in names if self.list_ids[n] is None]
        if missing:
            self.issue(
                line,
                "lists",
                cells[at],
                f"Unknown contact list(s): {', '.join(missing)}. Create them under Contact "
                "lists first, or correct the spelling.",
            )
            return None
        return sorted({self.list_ids[n] for n in names})

    def flush(self, *, force: bool = False) -> None:
        if not (self.rows or self.issues or force):
            return
        with transaction.atomic():
            if _cancel_requested(self.job.pk):
                raise _Cancelled
            if self.rows:
                with connection.cursor() as cursor:
                    cursor.executemany(self.insert_sql, self.rows)
            _add_issues(self.job, self.issues)
            self.issues_total += len(self.issues)
            ImportJob.objects.filter(pk=self.job.pk).update(
                bytes_read=self.table.position(),
                rows_read=self.rows_read,
                issues_total=self.issues_total,
                updated_at=timezone.now(),
            )
        self.rows, self.issues = [], []


def _insert_sql(model, columns: list[str]) -> str:
    qn = connection.ops.quote_name
    placeholders = ", ".join(["%s"] * len(columns))
    return (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
        f"VALUES ({placeholders})"
    )


def _cancel_requested(job_id: int) -> bool:
    return ImportJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def _report_duplicates(job: ImportJob) -> None:
    """An issue for every row whose phone an earlier row of the file has."""
    groups = (
        ImportRow.objects.filter(job=job)
        .values("phone")
        .annotate(n=Count("id"), first=Min("line"))
        .filter(n__gt=1)
        .order_by()
    )
    batch: dict[str, int] = {}

    def flush() -> None:
        issues = [
            ImportIssue(
                job=job,
                line=line,
                column="phone",
                value=phone,
                reason=f"{phone} is already on line {batch[phone]}: a number may appear once "
                "in a file. Merge the rows or remove one.",
            )
            for phone, line in ImportRow.objects.filter(job=job, phone__in=list(batch))
            .values_list("phone", "line")
            .order_by("line")
            if line != batch[phone]
        ]
        _add_issues(job, issues)
        batch.clear()

    for group in groups.iterator(chunk_size=CHUNK_ROWS):
        batch[group["phone"]] = group["first"]
        if len(batch) >= 500:
            flush()
    if batch:
        flush()


def _delete_in_chunks(queryset) -> None:
    """Delete ``queryset`` (rows without dependants) 10,000 rows per transaction."""
    queryset = queryset.order_by("id")
    while True:
        last = list(queryset.values_list("id", flat=True)[CHUNK_ROWS * 5 : CHUNK_ROWS * 5 + 1])
        with transaction.atomic():
            if not last:
                queryset._raw_delete(queryset.db)
                return
            queryset.filter(id__lte=last[0])._raw_delete(queryset.db)


def _drop_files(job: ImportJob) -> None:
    ImportFileChunk.objects.filter(job=job).delete()


def _drop_staging(job: ImportJob, *, files: bool = False) -> None:
    if files:
        _drop_files(job)
    _delete_in_chunks(ImportRow.objects.filter(job=job))


# ---------------------------------------------------------------- confirm, cancel


def import_confirm(*, job: ImportJob, user) -> ImportJob:
    """The user saw the check and wants it applied: ready → applying."""
    with transaction.atomic():
        moved = ImportJob.objects.filter(pk=job.pk, status=S.READY).update(
            status=S.APPLYING, status_detail="", updated_at=timezone.now()
        )
        if not moved:
            job.refresh_from_db()
            raise ValidationError(
                f"This import is “{job.get_status_display()}”: only a checked import "
                "waiting for confirmation can be applied."
            )
        _enqueue("contacts.importing.tasks.apply_import", job.pk)
    logger.info("import %s confirmed by %s", job.pk, getattr(user, "pk", None))
    job.refresh_from_db()
    return job


def import_cancel(*, job: ImportJob, user) -> ImportJob:
    """Cancel an import that has not finished; nothing of it stays.

    Queued or checked: cancelled at once (staged rows dropped by a task).
    Being read or applied: the worker stops at its next chunk and undoes
    what it applied. A finished import cannot be cancelled.
    """
    now = timezone.now()
    with transaction.atomic():
        if ImportJob.objects.filter(pk=job.pk, status__in=[S.QUEUED, S.READY]).update(
            status=S.CANCELLED,
            status_detail="Cancelled: nothing was imported.",
            cancel_requested=True,
            updated_at=now,
            finished_at=now,
        ):
            _enqueue("contacts.importing.tasks.clean_import", job.pk)
        elif not ImportJob.objects.filter(pk=job.pk, status__in=[S.STAGING, S.APPLYING]).update(
            cancel_requested=True, updated_at=now
        ):
            job.refresh_from_db()
            raise ValidationError(
                f"This import is “{job.get_status_display()}” and cannot be cancelled."
            )
    logger.info("import %s: cancel asked by %s", job.pk, getattr(user, "pk", None))
    job.refresh_from_db()
    return job


def import_clean(*, job_id: int) -> None:
    """Drop the file and staged rows of a finished job (a task)."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status in ImportJob.OPEN_STATUSES:
        return
    _drop_staging(job, files=True)
    _delete_in_chunks(ImportChange.objects.filter(job=job))


# ---------------------------------------------------------------- apply


def import_apply(*, job_id: int, time_slice: float = APPLY_SLICE) -> ImportJob:
    """Apply the staged rows of an ``applying`` job, a chunk per transaction.

    Resumes after ``apply_cursor``. After ``time_slice`` seconds it queues
    itself again and returns. On a cancel or an error it undoes everything
    this job applied and ends ``cancelled`` / ``failed``.
    """
    job = ImportJob.objects.get(pk=job_id)
    if job.status != S.APPLYING:
        return job
    applier = _Applier(job)
    started = time.monotonic()
    try:
        while True:
            if _cancel_requested(job.pk):
                raise _Cancelled
            if time.monotonic() - started > time_slice:
                with transaction.atomic():
                    _enqueue("contacts.importing.tasks.apply_import", job.pk)
                job.refresh_from_db()
                return job
            if not applier.next_chunk():
                break
    except _Superseded:
        job.refresh_from_db()
        return job
    except _Cancelled:
        _undo(job)
        job = _finish(job, S.CANCELLED, "Cancelled: what had been imported was undone.")
        _async_clean(job)
        return job
    except Exception as exc:
        logger.exception("import %s: applying failed; undoing", job_id)
        _undo(job)
        job = _finish(job, S.FAILED, f"Importing failed and was undone: {exc}")
        _async_clean(job)
        return job
    job = _finish(job, S.DONE, "")
    _async_clean(job)
    return job


def _async_clean(job: ImportJob) -> None:
    with transaction.atomic():
        _enqueue("contacts.importing.tasks.clean_import", job.pk)


class _Applier:
    """Applies the staged rows of one job, chunk by chunk."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.columns = [c for c in job.columns if c in ("first_name", "last_name", "email")]
        self.custom = "custom_fields" in job.columns
        self.target_list = job.target_list_id
        qn = connection.ops.quote_name
        table = qn(Contact._meta.db_table)
        fields = ["phone", "first_name", "last_name", "email", "custom_fields"]
        updated = [*self.columns, *(["custom_fields"] if self.custom else []), "updated_at"]
        row = "(" + ", ".join(["%s"] * (len(fields) + 2)) + ")"
        self.contact_sql = (
            f"INSERT INTO {table} ({', '.join(qn(f) for f in fields)}, "
            f"{qn('created_at')}, {qn('updated_at')}) VALUES {{rows}} "
            f"ON CONFLICT ({qn('phone')}) DO UPDATE SET "
            + ", ".join(f"{qn(f)} = excluded.{qn(f)}" for f in updated)
            + f" RETURNING {qn('id')}, {qn('phone')}",
            row,
        )
        membership = qn(ListMembership._meta.db_table)
        self.membership_sql = (
            f"INSERT INTO {membership} ({qn('contact_id')}, {qn('contact_list_id')}, "
            f"{qn('added_at')}) VALUES {{rows}} "
            f"ON CONFLICT ({qn('contact_list_id')}, {qn('contact_id')}) DO NOTHING "
            f"RETURNING {qn('contact_id')}, {qn('contact_list_id')}",
            "(%s, %s, %s)",
        )
        self.change_sql = _insert_sql(
            ImportChange, ["job_id", "contact_id", "created", "previous", "lists_added"]
        )
        self.json_field = Contact._meta.get_field("custom_fields")
        self.lookup_sql = (
            f"SELECT {qn('phone')}, {qn('first_name')}, {qn('last_name')}, {qn('email')}, "
            f"{qn('custom_fields')} FROM {table} WHERE {qn('phone')} IN ({{}})"
        )

    def next_chunk(self) -> bool:
        cursor_before = (
            ImportJob.objects.filter(pk=self.job.pk).values_list("apply_cursor", flat=True).get()
        )
        rows = list(
            ImportRow.objects.filter(job_id=self.job.pk, id__gt=cursor_before)
            .order_by("id")
            .values_list(
                "id", "phone", "first_name", "last_name", "email", "custom_fields", "list_ids"
            )[:CHUNK_ROWS]
        )
        if not rows:
            return False
        with transaction.atomic():
            # First, so two workers never apply the same chunk: the second
            # finds the cursor moved (PostgreSQL waits on the row lock).
            moved = ImportJob.objects.filter(pk=self.job.pk, apply_cursor=cursor_before).update(
                apply_cursor=rows[-1][0], updated_at=timezone.now()
            )
            if not moved:
                raise _Superseded
            self.apply(rows)
        return True

    def apply(self, rows: list[tuple]) -> None:
        phones = [row[1] for row in rows]
        existing = {}
        with connection.cursor() as cursor:
            # Raw: the ORM's IN lookup prepares each of the 2,000 values in Python.
            cursor.execute(self.lookup_sql.format(", ".join(["%s"] * len(phones))), phones)
            for phone, first, last, email, custom in cursor.fetchall():
                custom = self.json_field.from_db_value(custom, None, connection)
                existing[phone] = (first, last, email, custom)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        params: list = []
        previous: dict[str, str] = {}
        for _id, phone, first, last, email, custom_text, _lists in rows:
            before = existing.get(phone)
            if before is None:
                values = {"first_name": "", "last_name": "", "email": "", "custom_fields": {}}
            else:
                values = dict(zip(CONTACT_FIELDS, before, strict=True))
                previous[phone] = json.dumps(values, ensure_ascii=False)
            file_values = {"first_name": first, "last_name": last, "email": email}
            for column in self.columns:
                values[column] = file_values[column]
            custom = values["custom_fields"] or {}
            if not (self.custom and custom_text):
                custom_json = json.dumps(custom, ensure_ascii=False) if custom else "{}"
            elif not custom:
                custom_json = custom_text  # already a JSON object: no need to parse it
            else:
                custom_json = json.dumps({**custom, **json.loads(custom_text)}, ensure_ascii=False)
            # JSON as text: SQLite stores it, PostgreSQL casts the literal to jsonb.
            params += [
                phone,
                values["first_name"],
                values["last_name"],
                values["email"],
                custom_json,
                now,
                now,
            ]
        ids = dict(
            (phone, contact_id)
            for contact_id, phone in _execute_rows(self.contact_sql, params, len(rows))
        )
        wanted: list = []
        for _id, phone, *_rest, list_ids in rows:
            targets = {int(i) for i in list_ids.split(LIST_SEPARATOR) if i}
            if self.target_list:
                targets.add(self.target_list)
            for list_id in sorted(targets):
                wanted += [ids[phone], list_id, now]
        added: dict[int, list[int]] = {}
        step = 3 * MEMBERSHIPS_PER_INSERT
        for start in range(0, len(wanted), step):
            part = wanted[start : start + step]
            for contact_id, list_id in _execute_rows(self.membership_sql, part, len(part) // 3):
                added.setdefault(contact_id, []).append(list_id)
        changes = [
            (
                self.job.pk,
                ids[phone],
                phone not in previous,
                previous.get(phone, ""),
                LIST_SEPARATOR.join(str(i) for i in sorted(added.get(ids[phone], ()))),
            )
            for _id, phone, *_rest in rows
        ]
        with connection.cursor() as cursor:
            cursor.executemany(self.change_sql, changes)
        ImportJob.objects.filter(pk=self.job.pk).update(rows_applied=F("rows_applied") + len(rows))


def _execute_rows(sql: tuple[str, str], params: list, count: int) -> list[tuple]:
    """Run a multi-row ``VALUES {rows}`` statement and return its RETURNING rows."""
    template, row = sql
    with connection.cursor() as cursor:
        cursor.execute(template.format(rows=", ".join([row] * count)), params)
        return cursor.fetchall()


# ---------------------------------------------------------------- undo


def _undo(job: ImportJob) -> None:
    """Undo every recorded change of ``job``, newest first, a chunk at a time."""
    fields = CONTACT_FIELDS
    changes = ImportChange.objects.filter(job=job)
    while True:
        chunk = list(
            changes.order_by("-id").values_list(
                "id", "contact_id", "created", "previous", "lists_added"
            )[:CHUNK_ROWS]
        )
        if not chunk:
            return
        with transaction.atomic():
            created = [contact_id for _id, contact_id, was_new, _p, _l in chunk if was_new]
            restored = [
                Contact(pk=contact_id, **json.loads(previous))
                for _id, contact_id, was_new, previous, _l in chunk
                if not was_new and previous
            ]
            by_list: dict[int, list[int]] = {}
            for _id, contact_id, was_new, _p, lists_added in chunk:
                if not was_new:
                    for list_id in filter(None, lists_added.split(LIST_SEPARATOR)):
                        by_list.setdefault(int(list_id), []).append(contact_id)
            for list_id, contact_ids in by_list.items():
                ListMembership.objects.filter(
                    contact_list_id=list_id, contact_id__in=contact_ids
                ).delete()
            if restored:
                Contact.objects.bulk_update(restored, fields, batch_size=500)
            if created:
                Contact.objects.filter(pk__in=created).delete()
            ImportChange.objects.filter(pk__in=[c[0] for c in chunk]).delete()
            ImportJob.objects.filter(pk=job.pk).update(
                rows_applied=Greatest(F("rows_applied") - len(chunk), 0),
                apply_cursor=0,
            )
