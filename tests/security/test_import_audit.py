"""An opt-out import (django-import-export in the admin) writes one audit
entry naming who imported which file and what it did, shown on the audit page."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts.models import OptOut

pytestmark = pytest.mark.django_db


def test_an_opt_out_import_writes_one_audit_entry_naming_who_and_what(client, superuser):
    client.force_login(superuser)
    upload = SimpleUploadedFile(
        "optouts.csv", b"phone,reason\n0400 123 456,asked\n0400 123 457,asked\n", "text/csv"
    )
    first = client.post(
        reverse("admin:contacts_optout_import"),
        {"import_file": upload, "format": "0", "resource": "0"},
    )
    assert first.status_code == 200
    confirm = first.context["confirm_form"].initial
    response = client.post(reverse("admin:contacts_optout_process_import"), confirm)
    assert response.status_code == 302
    assert OptOut.objects.count() == 2
    entry = LogEntry.objects.get()
    assert entry.user == superuser
    assert entry.object_repr == "Import of optouts.csv"
    assert entry.get_change_message() == (
        "Imported opt-outs from optouts.csv: 2 new, 0 updated, 0 unchanged, 0 deleted."
    )
    audit = client.get(reverse("admin:smsoffice_auditlog_changelist"))
    assert "Import of optouts.csv" in audit.content.decode()
