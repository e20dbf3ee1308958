"""The live counter's JSON view and the quote box on the campaign page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from campaigns.models import Campaign, MessageTemplate
from contacts.models import Contact, ContactList, ListMembership

pytestmark = pytest.mark.django_db

URL = "/admin/campaigns/campaign/measure/"
CURLY = "\u2019"
EMOJI = "\U0001f600"


@pytest.fixture
def staff_client(client, operator):
    client.force_login(operator)
    return client


def test_measure_answers_encoding_segments_and_offending_characters(staff_client):
    text = f"It{CURLY}s party time {EMOJI}" + "a" * 60
    data = staff_client.post(URL, {"text": text}).json()
    assert data["encoding"] == "UCS-2"
    assert data["characters"] == 77
    assert data["units"] == 78
    assert data["segments"] == 2
    assert data["per_part"] == 67
    assert [(c["position"], c["char"]) for c in data["non_gsm"]] == [(2, CURLY), (16, EMOJI)]
    assert data["non_gsm"][0]["name"] == "Right Single Quotation Mark"
    suggestion = data["suggestion"]
    assert suggestion["text"] == f"It's party time {EMOJI}" + "a" * 60
    assert suggestion["segments_before"] == 2
    assert suggestion["kept"] == [{"position": 16, "char": EMOJI, "name": "Grinning Face"}]
    assert data["problems"] == []


def test_measure_gsm_text_has_no_suggestion(staff_client):
    data = staff_client.post(URL, {"text": "Hello [world]"}).json()
    assert (data["encoding"], data["units"], data["segments"]) == ("GSM-7", 15, 1)
    assert data["non_gsm"] == []
    assert data["suggestion"] is None


def test_measure_adds_the_provider_limits_of_the_chosen_account(staff_client, make_account):
    account = make_account(backend="fullsms")
    data = staff_client.post(URL, {"text": CURLY * 269, "account": account.pk}).json()
    assert len(data["problems"]) == 1
    assert "FullSMS accepts at most 268 UCS-2 units" in data["problems"][0]


def test_measure_reports_template_errors_using_the_template_defaults(staff_client):
    template = MessageTemplate.objects.create(name="T", body="x", defaults={"nick": "you"})
    text = "Hi {{ nick }} {{ nope }}"
    data = staff_client.post(URL, {"text": text, "template": template.pk}).json()
    assert data["placeholders"] == ["nick", "nope"]
    assert len(data["template_errors"]) == 1
    assert data["template_errors"][0].startswith("Unknown placeholder: {{ nope }}.")
    data = staff_client.post(URL, {"text": text, "defaults": '{"nope": "x", "nick": "y"}'}).json()
    assert data["template_errors"] == []


def test_measure_refuses_get(staff_client):
    assert staff_client.get(URL).status_code == 405


def test_measure_needs_a_logged_in_staff_user(client):
    response = client.post(URL, {"text": "hi"})
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_measure_needs_permission_to_write_bodies(client, db):
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    assert client.post(URL, {"text": "hi"}).status_code == 403


def test_measure_refuses_huge_text(staff_client):
    response = staff_client.post(URL, {"text": "a" * 10_001})
    assert response.status_code == 400
    assert "over 10000 characters" in response.json()["error"]


def test_measure_is_csrf_protected(operator):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(URL, {"text": "hi"}).status_code == 403


def test_body_fields_carry_the_live_counter(staff_client):
    for url in ("/admin/campaigns/campaign/add/", "/admin/campaigns/messagetemplate/add/"):
        html = staff_client.get(url).content.decode()
        assert "campaigns/sms_counter.js" in html
        assert f'data-measure-url="{URL}"' in html
        assert "data-sms-counter" in html


def test_campaign_page_shows_the_quote_before_the_actions(staff_client, make_account):
    account = make_account(balance=Decimal("10"), default_sender="Acme")
    contact_list = ContactList.objects.create(name="L")
    for i, name in enumerate(["Ann", "Bob", ""], start=1):
        contact = Contact.objects.create(phone=f"+6140000000{i}", first_name=name)
        ListMembership.objects.create(contact_list=contact_list, contact=contact)
    campaign = Campaign.objects.create(
        name="Spring",
        account=account,
        body='Hi {{ first_name|default:"there" }} ' + "z" * 150,
        extra_numbers="+61400000001\nbad",
    )
    campaign.lists.set([contact_list])

    html = staff_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "Quote: what sending now would do" in html
    assert '<td class="quote-recipients">3</td>' in html
    assert "0 opted out" in html
    assert "1 invalid number," in html
    assert "1 duplicate" in html
    # "Hi Ann " + 150 = 157 and "Hi Bob " = 157 fit one SMS; "Hi there " + 150 = 159 too.
    assert "3 \u00d7 1 SMS" in html
    assert '<td class="quote-credits">3.00</td>' in html
    assert '<td class="quote-balance-after">7.00</td>' in html
    assert html.index('id="campaign-quote"') < html.index('class="submit-row"')


def test_campaign_page_lists_problems(staff_client, make_account):
    campaign = Campaign.objects.create(name="Empty", account=make_account())
    html = staff_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "Fix before sending" in html
    assert "The message is empty" in html


def test_sent_campaign_shows_the_confirmed_quote(staff_client, make_account):
    campaign = Campaign.objects.create(
        name="Done",
        account=make_account(),
        body="Hi",
        status=Campaign.Status.COMPLETED,
        confirmed_quote={
            "recipients": 42,
            "excluded": {"opted_out": 1, "invalid": 0, "duplicate": 3},
            "segments_distribution": {"1": 42},
            "segments_total": 42,
            "credits_needed": "42.00",
            "available": "100.00",
            "balance_after": "58.00",
            "problems": [],
        },
    )
    html = staff_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "Quote confirmed when it was sent" in html
    assert '<td class="quote-recipients">42</td>' in html
    assert "42 \u00d7 1 SMS" in html
