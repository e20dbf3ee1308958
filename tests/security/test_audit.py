"""The audit page: who did what and when (admin changes, credential
changes, imports, campaign events, top-ups, opt-outs), read-only, filtered by
user and object; an import writes one audit entry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import Campaign, CampaignEvent
from contacts.models import Contact, OptOut
from contacts.services import optout_add
from providers.services import credits_top_up

pytestmark = pytest.mark.django_db

AUDIT = reverse("admin:smsoffice_auditlog_changelist")


def _import(client, csv_text: bytes, name="people.csv"):
    upload = SimpleUploadedFile(name, csv_text, content_type="text/csv")
    first = client.post(
        reverse("admin:contacts_contact_import"),
        {"import_file": upload, "format": "0", "resource": "0"},
    )
    assert first.status_code == 200
    confirm = first.context["confirm_form"].initial
    return client.post(reverse("admin:contacts_contact_process_import"), confirm)


def test_an_import_writes_one_audit_entry_naming_who_and_what(client, superuser):
    client.force_login(superuser)
    response = _import(client, b"phone,first_name\n0400 123 456,Ann\n0400 123 457,Bob\n")
    assert response.status_code == 302
    assert Contact.objects.count() == 2
    entry = LogEntry.objects.get()
    assert entry.user == superuser
    assert entry.object_repr == "Import of people.csv"
    assert (
        entry.get_change_message()
        == "Imported contacts from people.csv: 2 new, 0 updated, 0 unchanged, 0 deleted."
    )


@pytest.fixture
def history(superuser, operator, make_account):
    account = make_account(name="Acme Main", credentials={"password": "x" * 10})
    credits_top_up(account=account, amount=Decimal(50), user=superuser, note="invoice 42")
    campaign = Campaign.objects.create(name="Spring promo", account=account, body="Hi")
    CampaignEvent.objects.create(
        campaign=campaign, action="pause", from_status="sending", to_status="paused", user=operator
    )
    optout_add(phone="+61400123456", source=OptOut.Source.MANUAL, reason="complaint", user=operator)
    return account, campaign


def test_the_audit_page_shows_every_kind_of_action(client, superuser, history):
    account, _ = history
    client.force_login(superuser)
    # A credential change through the admin form lands in the admin log.
    change = reverse("admin:providers_provideraccount_change", args=[account.pk])
    context = client.get(change).context
    form = context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list)}
    data.update(credentials_input='{"password": "new-secret-value"}', country_rates="{}")
    for inline in context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(k): v for k, v in management.initial.items()})
    assert client.post(change, data).status_code == 302
    page = client.get(AUDIT)
    assert page.status_code == 200
    text = page.content.decode()
    for expected in (
        "Top-up +50.00",
        "Account Acme Main",
        "pause (sending → paused)",
        "Campaign Spring promo",
        "Opted out: Opted out",
        "+61400123456",
    ):
        assert expected in text, expected
    assert "Changed provider account" in text
    assert "new-secret-value" not in text


def test_the_audit_page_filters_by_user_and_object(client, superuser, operator, history):
    client.force_login(superuser)
    mine = client.get(AUDIT, {"user": operator.pk}).content.decode()
    assert "Campaign Spring promo" in mine and "+61400123456" in mine
    assert "Top-up" not in mine
    by_object = client.get(AUDIT, {"q": "Spring"}).content.decode()
    assert "Campaign Spring promo" in by_object and "+61400123456" not in by_object
    credits = client.get(AUDIT, {"source": "credits"}).content.decode()
    assert "Top-up" in credits and "Spring promo" not in credits


def test_the_audit_page_is_read_only_and_not_for_operators(client, superuser, operator):
    client.force_login(operator)
    assert client.get(AUDIT).status_code == 403
    client.force_login(superuser)
    assert client.get(reverse("admin:smsoffice_auditlog_add")).status_code == 403
