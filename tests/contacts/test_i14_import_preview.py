"""The checked import's page shows its staged rows, custom fields included."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from contacts.importing.models import ImportJob
from contacts.importing.preview import import_preview
from contacts.importing.services import import_stage

pytestmark = pytest.mark.django_db

ADD = "/admin/contacts/importjob/add/"


@pytest.fixture
def logged_in(client, operator):
    client.force_login(operator)
    return client


def _staged(client, content: bytes) -> ImportJob:
    data = {"file": SimpleUploadedFile("c.csv", content), "encoding": "auto"}
    assert client.post(ADD, data).status_code == 302
    job = ImportJob.objects.get()
    import_stage(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.READY
    return job


def test_the_preview_table_shows_each_rows_custom_fields(logged_in):
    job = _staged(
        logged_in,
        b"phone,first_name,membership,city\n"
        b"0400 123 456,Ann,gold,Perth\n0400 123 457,Bob,,Hobart\n",
    )
    page = logged_in.get(f"/admin/contacts/importjob/{job.pk}/change/").content.decode()
    assert 'class="import-preview"' in page
    table = page.split('class="import-preview"', 1)[1].split("</table>", 1)[0]
    assert '<th scope="col">membership</th>' in table and '<th scope="col">city</th>' in table
    assert "<td>gold</td><td>Perth</td>" in table
    assert "<td>Bob</td><td></td><td>Hobart</td>" in table


def test_the_preview_lists_columns_in_order_and_counts_the_rest(logged_in):
    rows = b"".join(b"04001234%02d,P%d,%d\n" % (i, i, i) for i in range(25))
    job = _staged(logged_in, b"phone,first_name,tier\n" + rows)
    preview = import_preview(job, limit=20)
    assert preview.headers == ["Line", "Phone", "First name", "tier"]
    assert len(preview.rows) == 20 and preview.more == 5
    assert preview.rows[0][2:] == ["P0", "0"]
