"""Running a contact import in tests: the services one after the other, as
the worker would (tests run inside a transaction that never commits, so
nothing is handed to django-q2)."""

from __future__ import annotations

import io

from django.core.files.uploadedfile import SimpleUploadedFile

from contacts.importing.models import ImportJob
from contacts.importing.services import import_apply, import_confirm, import_create, import_stage


def upload(content: bytes, name: str = "contacts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def stage(content: bytes, *, name: str = "contacts.csv", user=None, **options) -> ImportJob:
    job = import_create(upload=upload(content, name), user=user, **options)
    return import_stage(job_id=job.pk)


def run_import(content: bytes, *, name: str = "contacts.csv", user=None, **options) -> ImportJob:
    """Stage, confirm (when the check passed) and apply; return the job."""
    job = stage(content, name=name, user=user, **options)
    if job.status != ImportJob.Status.READY:
        return job
    import_confirm(job=job, user=user)
    return import_apply(job_id=job.pk)


def xlsx(rows: list[list]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def issues(job: ImportJob) -> list[tuple[int, str, str, str]]:
    return list(job.issues.order_by("line", "id").values_list("line", "column", "value", "reason"))
