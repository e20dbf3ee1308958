"""django-q2 entry points of contact imports: each takes a job id and calls a service."""

from __future__ import annotations

from contacts.importing.services import import_apply, import_clean, import_stage


def stage_import(job_id: int) -> str:
    job = import_stage(job_id=int(job_id))
    return f"{job.status}: {job.rows_read} rows read, {job.issues_total} issues"


def apply_import(job_id: int) -> str:
    job = import_apply(job_id=int(job_id))
    return f"{job.status}: {job.rows_applied} of {job.rows_total} rows applied"


def clean_import(job_id: int) -> str:
    import_clean(job_id=int(job_id))
    return "cleaned"
