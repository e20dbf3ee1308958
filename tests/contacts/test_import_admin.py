"""The import pages: upload, the job page with its report, progress, CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from contacts.importing.models import ImportJob
from contacts.importing.services import import_apply, import_stage
from contacts.models import Contact

pytestmark = pytest.mark.django_db

ADD = "/admin/contacts/importjob/add/"


@pytest.fixture
def logged_in(client, operator):
    client.force_login(operator)
    return client


def _upload(client, content: bytes, **fields):
    data = {"file": SimpleUploadedFile("c.csv", content), "encoding": "auto", **fields}
    return client.post(ADD, data)


def test_upload_check_confirm_import(logged_in):
    response = _upload(logged_in, b"phone,first_name\n0400 123 456,Ann\n")
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/contacts/importjob/{job.pk}/change/"
    page = logged_in.get(response["Location"]).content.decode()
    assert "Waiting for a worker" in page and 'class="import-bar"' in page
    assert "<script>" not in page  # progress by static JS only

    import_stage(job_id=job.pk)
    page = logged_in.get(response["Location"]).content.decode()
    assert "1</strong> new contacts" in page and "Import 1 contacts" in page
    assert not Contact.objects.exists()

    assert logged_in.post(f"/admin/contacts/importjob/{job.pk}/confirm/").status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLYING
    progress = logged_in.get(f"/admin/contacts/importjob/{job.pk}/progress/").json()
    assert progress["status"] == "applying" and progress["rows_total"] == 1
    import_apply(job_id=job.pk)
    assert Contact.objects.get().first_name == "Ann"
    assert "Imported 1 rows" in logged_in.get(response["Location"]).content.decode()


def test_job_page_lists_problems_and_the_csv_has_them_all_formula_safe(logged_in):
    _upload(logged_in, b"phone,first_name\n0400 123 456,Ann\n=1+2,Bad\n")
    job = ImportJob.objects.get()
    import_stage(job_id=job.pk)
    page = logged_in.get(f"/admin/contacts/importjob/{job.pk}/change/").content.decode()
    assert "Problems found: nothing was imported" in page
    assert "<td>3</td><td>phone</td><td><code>=1+2</code></td>" in page
    assert "Import 1 contacts" not in page
    response = logged_in.get(f"/admin/contacts/importjob/{job.pk}/report.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["Line", "Column", "Value", "Reason"]
    assert rows[1][:3] == ["3", "phone", "'=1+2"]
    assert Contact.objects.count() == 0


def test_upload_over_the_limit_is_a_form_error_and_stores_nothing(logged_in, settings):
    settings.CONTACT_IMPORT_MAX_BYTES = 50
    response = _upload(logged_in, b"phone\n" + b"0400123456\n" * 10)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The file is 116 bytes; the largest accepted is 50 bytes" in page
    assert not ImportJob.objects.exists()


def test_a_huge_request_is_refused_before_it_is_read(logged_in, settings):
    settings.CONTACT_IMPORT_MAX_BYTES = 50
    response = logged_in.post(ADD, data=b"x" * 70_000, content_type="application/octet-stream")
    assert response.status_code == 200
    assert "the largest accepted is 50 bytes" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_cancel_button(logged_in):
    _upload(logged_in, b"phone\n0400123456\n")
    job = ImportJob.objects.get()
    import_stage(job_id=job.pk)
    logged_in.post(f"/admin/contacts/importjob/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED


def test_importing_needs_the_contact_permissions(client, make_reseller):
    client.force_login(make_reseller("res"))
    assert client.get(ADD).status_code == 403
    assert client.get("/admin/contacts/importjob/").status_code == 403


def test_contacts_list_links_to_the_import(logged_in):
    page = logged_in.get("/admin/contacts/contact/").content.decode()
    assert f'href="{ADD}"' in page
