"""The steps of a contact import (see :mod:`contacts.importing` for the flow):
create, stage, confirm, apply, cancel, clean. Staging and applying live in
:mod:`~contacts.importing.staging` and :mod:`~contacts.importing.applying`.

Every state change of an :class:`ImportJob` is here. Work is done a chunk of
rows at a time, each chunk in its own short transaction, so the web, the
webhooks and the campaign engine keep writing while a big file goes in.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from contacts.importing import common
from contacts.importing.applying import Applier, undo
from contacts.importing.models import (
    ImportChange,
    ImportFileChunk,
    ImportIssue,
    ImportJob,
    ImportRow,
)
from contacts.importing.reader import UnreadableFile, open_table
from contacts.importing.staging import Stager, report_duplicates
from contacts.models import Contact, ContactList

logger = logging.getLogger("contacts.importing")

S = ImportJob.Status

#: Largest file accepted (bytes). ``CONTACT_IMPORT_MAX_BYTES`` in settings.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: Bytes per stored piece of the uploaded file.
FILE_CHUNK = 1024 * 1024
#: One apply task stops after this many seconds and queues the next one.
APPLY_SLICE = 60.0
#: The staging task reads a whole file (50 MB at most) in one run.
STAGE_TIMEOUT = 900
#: A job in a step that has not moved for this long has lost its worker.
STALE_AFTER = timedelta(minutes=10)


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

    options = {"timeout": STAGE_TIMEOUT} if task.endswith(".stage_import") else {}
    async_task(
        task, job_id, task_name=f"contact import {job_id}", group=f"import-{job_id}", **options
    )


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
                common.add_issues(job, [ImportIssue(job=job, line=1, reason=str(exc))])
            else:
                ImportJob.objects.filter(pk=job.pk).update(
                    detected_encoding=table.encoding or table.format.upper()
                )
                Stager(job, table).run()
        common.refresh_statistics(ImportRow)
        if not _issue_count(job):
            report_duplicates(job)
    except common.Cancelled:
        _drop_staging(job, files=True)
        return _finish(job, S.CANCELLED, "Cancelled while the file was being read.")
    except UnreadableFile as exc:
        common.add_issues(job, [ImportIssue(job=job, line=1, reason=str(exc))])
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


def _drop_files(job: ImportJob) -> None:
    ImportFileChunk.objects.filter(job=job).delete()


def _drop_staging(job: ImportJob, *, files: bool = False) -> None:
    if files:
        _drop_files(job)
    common.delete_in_chunks(ImportRow.objects.filter(job=job))


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
    what it applied; a job that has not moved for :data:`STALE_AFTER` lost
    its worker, and is cancelled (or undone by a new task) all the same. A
    finished import cannot be cancelled.
    """
    now = timezone.now()
    with transaction.atomic():
        if ImportJob.objects.filter(pk=job.pk, status__in=[S.QUEUED, S.READY]).update(
            status=S.CANCELLED,
            status_detail="Cancelled: nothing was imported.",
            cancel_requested=True,
            updated_at=now,
            finished_at=now,
        ) or ImportJob.objects.filter(
            pk=job.pk, status=S.STAGING, updated_at__lt=now - STALE_AFTER
        ).update(
            status=S.CANCELLED,
            status_detail="Cancelled (its worker had stopped): nothing was imported.",
            cancel_requested=True,
            updated_at=now,
            finished_at=now,
        ):
            _enqueue("contacts.importing.tasks.clean_import", job.pk)
        elif ImportJob.objects.filter(
            pk=job.pk, status=S.APPLYING, updated_at__lt=now - STALE_AFTER
        ).update(cancel_requested=True, updated_at=now):
            # Its worker is gone: a new apply task sees the cancel and undoes.
            _enqueue("contacts.importing.tasks.apply_import", job.pk)
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
    common.refresh_statistics(ImportChange)
    common.delete_in_chunks(ImportChange.objects.filter(job=job))


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
    applier = Applier(job)
    started = time.monotonic()
    try:
        while True:
            if common.cancel_requested(job.pk):
                raise common.Cancelled
            if time.monotonic() - started > time_slice:
                with transaction.atomic():
                    _enqueue("contacts.importing.tasks.apply_import", job.pk)
                job.refresh_from_db()
                return job
            if not applier.next_chunk():
                break
    except common.Superseded:
        job.refresh_from_db()
        return job
    except common.Cancelled:
        undo(job)
        job = _finish(job, S.CANCELLED, "Cancelled: what had been imported was undone.")
        _async_clean(job)
        return job
    except Exception as exc:
        logger.exception("import %s: applying failed; undoing", job_id)
        undo(job)
        job = _finish(job, S.FAILED, f"Importing failed and was undone: {exc}")
        _async_clean(job)
        return job
    job = _finish(job, S.DONE, "")
    _audit_done(job)
    _async_clean(job)
    return job


def _audit_done(job: ImportJob) -> None:
    """One entry in the admin log (the audit page) per finished import: who
    imported which file and what it did, not one entry per row."""
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.contenttypes.models import ContentType

    if job.created_by_id is None:
        return
    updated = max(job.rows_applied - job.rows_new, 0)
    LogEntry.objects.create(
        user_id=job.created_by_id,
        content_type=ContentType.objects.get_for_model(ImportJob),
        object_id=str(job.pk),
        object_repr=f"Import of {job.file_name}"[:200],
        action_flag=ADDITION,
        change_message=(
            f"Imported contacts from {job.file_name}: {job.rows_new} new, {updated} updated."
        ),
    )


def _async_clean(job: ImportJob) -> None:
    with transaction.atomic():
        _enqueue("contacts.importing.tasks.clean_import", job.pk)
