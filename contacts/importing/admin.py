"""The contact import pages: upload, the job page (progress, report, confirm,
cancel), its progress as JSON, and the report as CSV.

Registered as the "Contact imports" admin; the Contacts list links its
Import button here. Importing needs the permission to add and change
contacts; seeing imports, the permission to view contacts. Everything that
changes a job calls :mod:`contacts.importing.services`.
"""

from __future__ import annotations

import csv

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from contacts.importing.models import ImportIssue, ImportJob
from contacts.importing.preview import import_preview
from contacts.importing.services import (
    human_size,
    import_cancel,
    import_confirm,
    import_create,
    max_upload_bytes,
    too_big_message,
)
from contacts.models import ContactList
from smsoffice.csvsafe import safe_row

#: Issues listed on the job page; the CSV has them all.
ISSUES_ON_PAGE = 200
IMPORT_PERMISSIONS = ("contacts.add_contact", "contacts.change_contact")


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="File",
        help_text="CSV or Excel (.xlsx). The first line names the columns: phone (required), "
        "first_name, last_name, email, lists (names separated by ;), custom_fields (JSON); "
        "any other column becomes a custom field for templates.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,.tsv,.xlsx"}),
    )
    encoding = forms.ChoiceField(
        choices=ImportJob.Encoding.choices,
        initial=ImportJob.Encoding.AUTO,
        help_text="Of a CSV file. Detect reads UTF-8 (with or without BOM), UTF-16 with a BOM, "
        "and otherwise Windows-1252/Latin-1.",
    )
    target_list = forms.ModelChoiceField(
        queryset=ContactList.objects.all(),
        required=False,
        label="Also add everyone to",
        help_text="Optional: a list every contact of the file is added to.",
    )
    region = forms.CharField(
        max_length=2,
        required=False,
        label="Country of national numbers",
        help_text="Two letters, e.g. AU or GB: how to read numbers without +country code. "
        "Empty: the site default.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > max_upload_bytes():
            raise ValidationError(too_big_message(upload.size))
        return upload

    def clean_region(self):
        import phonenumbers

        region = self.cleaned_data["region"].strip().upper()
        if region and region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationError(f"{region!r} is not a two-letter country code such as AU or GB.")
        return region


def job_progress(job: ImportJob) -> dict:
    """What the progress bar shows (also the JSON of the progress URL)."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": job.get_status_display(),
        "detail": job.status_detail,
        "open": job.is_open,
        "percent": job.percent,
        "rows_read": job.rows_read,
        "rows_total": job.rows_total,
        "rows_applied": job.rows_applied,
        "issues": job.issues_total,
        "cancel_requested": job.cancel_requested,
    }


class _Echo:
    def write(self, value: str) -> str:
        return value


class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["created_at", "file_name", "status", "rows_total", "issues_total", "created_by"]
    list_filter = ["status"]
    list_select_related = ["created_by"]
    show_full_result_count = False
    sortable_by = ()

    # -------------------------------------------------------------- permissions
    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("contacts.view_contact")

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return all(request.user.has_perm(p) for p in IMPORT_PERMISSIONS)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _require_import(self, request) -> None:
        if not self.has_add_permission(request):
            raise PermissionDenied("Importing needs the permissions to add and change contacts.")

    # -------------------------------------------------------------- urls
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:job_id>/progress/", wrap(self.progress_view), name="contacts_import_progress"
            ),
            path("<int:job_id>/report.csv", wrap(self.report_view), name="contacts_import_report"),
            path("<int:job_id>/confirm/", wrap(self.confirm_view), name="contacts_import_confirm"),
            path("<int:job_id>/cancel/", wrap(self.cancel_view), name="contacts_import_cancel"),
            *super().get_urls(),
        ]

    def _job(self, request, job_id) -> ImportJob:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(ImportJob, pk=job_id)

    # -------------------------------------------------------------- upload
    def add_view(self, request, form_url="", extra_context=None):
        self._require_import(request)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        refused = ""
        if request.method == "POST" and length > max_upload_bytes() + 64 * 1024:
            # Refused before Django reads the body into a temporary file.
            form = ImportUploadForm()
            refused = too_big_message(length)
        elif request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    job = import_create(
                        upload=form.cleaned_data["file"],
                        user=request.user,
                        encoding=form.cleaned_data["encoding"],
                        region=form.cleaned_data["region"],
                        target_list=form.cleaned_data["target_list"],
                    )
                except ValidationError as exc:
                    form.add_error("file", exc)
                else:
                    return HttpResponseRedirect(
                        reverse("admin:contacts_importjob_change", args=[job.pk])
                    )
        else:
            form = ImportUploadForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import contacts",
            "form": form,
            "refused": refused,
            "max_size": human_size(max_upload_bytes()),
            "default_region": settings.PHONE_DEFAULT_REGION,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/contacts/importjob/upload.html", context)

    # -------------------------------------------------------------- job page
    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self._job(request, object_id)
        issues = list(ImportIssue.objects.filter(job=job).order_by("line", "id")[:ISSUES_ON_PAGE])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Import of {job.file_name}",
            "job": job,
            "progress": job_progress(job),
            "issues": issues,
            "issues_more": max(0, job.issues_total - len(issues)),
            "can_import": self.has_add_permission(request),
            "progress_url": reverse("admin:contacts_import_progress", args=[job.pk]),
            "report_url": reverse("admin:contacts_import_report", args=[job.pk]),
            "confirm_url": reverse("admin:contacts_import_confirm", args=[job.pk]),
            "cancel_url": reverse("admin:contacts_import_cancel", args=[job.pk]),
            "rows_updated": max(0, job.rows_total - job.rows_new),
            "preview": import_preview(job) if job.status == ImportJob.Status.READY else None,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/contacts/importjob/job.html", context)

    def progress_view(self, request, job_id):
        return JsonResponse(job_progress(self._job(request, job_id)))

    def report_view(self, request, job_id):
        """Every issue as CSV: line, column, value, reason (formula-safe)."""
        job = self._job(request, job_id)
        writer = csv.writer(_Echo())

        def lines():
            yield "\ufeff" + writer.writerow(["Line", "Column", "Value", "Reason"])
            issues = (
                ImportIssue.objects.filter(job=job)
                .order_by("line", "id")
                .values_list("line", "column", "value", "reason")
            )
            for row in issues.iterator(chunk_size=2000):
                yield writer.writerow(safe_row(row))

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-problems.csv"'
        return response

    def _act(self, request, job_id, service, done: str):
        self._require_import(request)
        job = self._job(request, job_id)
        try:
            service(job=job, user=request.user)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:contacts_importjob_change", args=[job.pk]))

    def confirm_view(self, request, job_id):
        return require_POST(lambda r: self._act(r, job_id, import_confirm, "Importing…"))(request)

    def cancel_view(self, request, job_id):
        return require_POST(
            lambda r: self._act(r, job_id, import_cancel, "Cancelling: nothing will be kept.")
        )(request)


admin.site.register(ImportJob, ImportJobAdmin)
