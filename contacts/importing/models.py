"""The models of a contact import job (see :mod:`contacts.importing`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from contacts.models import ContactList


class ImportJob(models.Model):
    """One uploaded file on its way into the contacts.

    States: queued → staging → invalid | ready → applying → done; any state
    before done → cancelled (what was applied is undone); staging/applying →
    failed (nothing kept). Only :mod:`contacts.importing.services` moves it.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        STAGING = "staging", "Reading and checking the file"
        INVALID = "invalid", "Problems found: nothing was imported"
        READY = "ready", "Checked: waiting for your confirmation"
        APPLYING = "applying", "Importing"
        DONE = "done", "Imported"
        CANCELLED = "cancelled", "Cancelled: nothing was imported"
        FAILED = "failed", "Failed: nothing was imported"

    OPEN_STATUSES = (Status.QUEUED, Status.STAGING, Status.READY, Status.APPLYING)

    class Encoding(models.TextChoices):
        AUTO = "auto", "Detect (UTF-8, UTF-16 or Windows/Latin-1)"
        UTF8 = "utf-8", "UTF-8"
        UTF16 = "utf-16", "UTF-16"
        CP1252 = "cp1252", "Windows-1252 (Western European)"
        LATIN1 = "latin-1", "Latin-1 (ISO-8859-1)"

    file_name = models.CharField(max_length=255)
    file_size = models.PositiveBigIntegerField(default=0)
    encoding = models.CharField(max_length=10, choices=Encoding.choices, default=Encoding.AUTO)
    detected_encoding = models.CharField(max_length=20, blank=True)
    region = models.CharField(
        max_length=2, blank=True, help_text="Country used to read national-format numbers."
    )
    target_list = models.ForeignKey(
        ContactList,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Every imported contact is also added to this list.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    status_detail = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    columns = models.JSONField(default=list, blank=True)

    # Progress: bytes while staging, rows while applying or undoing.
    bytes_read = models.PositiveBigIntegerField(default=0)
    rows_read = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_new = models.PositiveIntegerField(default=0)
    rows_applied = models.PositiveIntegerField(default=0)
    issues_total = models.PositiveIntegerField(default=0)
    # The last staged row applied: a re-delivered apply task resumes after it.
    apply_cursor = models.BigIntegerField(default=0)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "contact import"

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def percent(self) -> int:
        """How far the current step is, 0 to 100."""
        if self.status in (self.Status.DONE,):
            return 100
        if self.status == self.Status.APPLYING:
            return int(100 * self.rows_applied / self.rows_total) if self.rows_total else 0
        if self.status == self.Status.STAGING:
            return int(100 * self.bytes_read / self.file_size) if self.file_size else 0
        return 100 if self.status in (self.Status.READY, self.Status.INVALID) else 0


class ImportFileChunk(models.Model):
    """The uploaded file, in pieces of about 1 MB; deleted once staged."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="import_chunk_seq")]

    def __str__(self) -> str:
        return f"import {self.job_id} piece {self.seq}"


class ImportRow(models.Model):
    """One checked row of the file, waiting to be applied.

    Only the columns the file has are applied (``ImportJob.columns``);
    ``custom_fields`` is a JSON object as text, ``list_ids`` list ids
    separated by ``;``.
    """

    # No database constraint and no index of its own on ``job``: a staged row
    # is written by the job's own worker after the job, and goes with it
    # (Django cascades the delete); the constraint cost a check per row at
    # every commit, and the composite indexes below serve every lookup by job.
    job = models.ForeignKey(
        ImportJob,
        on_delete=models.CASCADE,
        related_name="rows",
        db_constraint=False,
        db_index=False,
    )
    line = models.PositiveIntegerField()
    phone = models.CharField(max_length=16)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.CharField(max_length=254, blank=True)
    custom_fields = models.TextField(blank=True)
    list_ids = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["job", "phone"], name="import_row_phone"),
            models.Index(fields=["job", "id"], name="import_row_order"),
        ]

    def __str__(self) -> str:
        return f"line {self.line}: {self.phone}"


class ImportIssue(models.Model):
    """A problem of the file: where (line, column), what (value) and why."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="issues")
    line = models.PositiveIntegerField()
    column = models.CharField(max_length=100, blank=True)
    value = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["line", "id"]
        indexes = [models.Index(fields=["job", "line"], name="import_issue_line")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ImportChange(models.Model):
    """What applying one contact changed, so that it can be undone.

    ``created``: the contact did not exist (undo deletes it); otherwise
    ``previous`` holds its fields before (JSON text). ``lists_added``: the
    list ids it was added to (undo removes those memberships only).
    """

    # As ImportRow.job: no constraint checked per row, no index of its own.
    job = models.ForeignKey(
        ImportJob,
        on_delete=models.CASCADE,
        related_name="changes",
        db_constraint=False,
        db_index=False,
    )
    contact_id = models.BigIntegerField()
    created = models.BooleanField()
    previous = models.TextField(blank=True)
    lists_added = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [models.Index(fields=["job", "id"], name="import_change_order")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} ({'created' if self.created else 'updated'})"
