"""campaigns.quote: recipients, exclusions by reason, segments after rendering,
credits by destination rate, and the problems that block sending."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from campaigns import quote as quote_module
from campaigns.models import Campaign, MessageTemplate
from campaigns.quote import (
    PlannedRecipient,
    RateResolver,
    campaign_quote,
    campaign_recipients,
    parse_extra_numbers,
)
from campaigns.templating import CompiledTemplate
from contacts.models import Contact, ContactList, ListMembership, OptOut
from contacts.phones import phone_region

pytestmark = pytest.mark.django_db

BODY = 'Hi {{ first_name|default:"there" }}, {{ store }} has 20% off today. Reply STOP to opt out.'
LONG_STORE = "X" * 150

EXTRA_NUMBERS = (
    "0400 000 005\n"  # new number, no contact -> recipient
    "+61400000001, not-a-number; 12345\n"  # in list A -> duplicate; two invalid
    "0400000005\n"  # same as the first line -> duplicate
    "+61400000003\n"  # Carl: in list A (opted out there) -> duplicate
    "+61400000099\n"  # on the opt-out list -> opted_out
    "+61 400 000 006"  # Eve: a contact in no list -> recipient, personalised
)


def body_for(name: str, store: str) -> str:
    return f"Hi {name}, {store} has 20% off today. Reply STOP to opt out."


@pytest.fixture
def world(make_account):
    """Two overlapping lists, an opt-out, AU/GB/NZ numbers, GB at 2 and NZ at
    1.5 credits per segment, and extra numbers of every kind."""
    account = make_account(
        balance=Decimal("100"), country_rates={"GB": "2", "NZ": "1.50"}, default_sender="Acme"
    )

    def contact(phone, first_name="", store=None):
        custom = {"store": store} if store is not None else {}
        return Contact.objects.create(phone=phone, first_name=first_name, custom_fields=custom)

    c = {
        "ann": contact("+61400000001", "Ann", "Bondi"),
        "bob": contact("+61400000002"),
        "carl": contact("+61400000003", "Carl", "Bondi"),
        "dee": contact("+61400000004", "Dee", LONG_STORE),
        "gary": contact("+447400123190", "Gáry", "Bondi"),
        "kiri": contact("+6421123456", "Kiri", "Ponsonby"),
        "eve": contact("+61400000006", "Eve", "Manly"),
    }
    list_a = ContactList.objects.create(name="A")
    list_b = ContactList.objects.create(name="B")
    for name in ("ann", "bob", "carl", "gary"):
        ListMembership.objects.create(contact_list=list_a, contact=c[name])
    for name in ("bob", "dee", "kiri"):
        ListMembership.objects.create(contact_list=list_b, contact=c[name])
    OptOut.objects.create(phone="+61400000003")
    OptOut.objects.create(phone="+61400000099")

    template = MessageTemplate.objects.create(
        name="Sale", body=BODY, defaults={"store": "our shop"}
    )
    campaign = Campaign.objects.create(
        name="Sale", account=account, template=template, extra_numbers=EXTRA_NUMBERS
    )
    campaign.lists.set([list_a, list_b])
    return {"account": account, "campaign": campaign, **c}


def test_quote_counts_exclusions_segments_and_credits(world):
    quote = campaign_quote(campaign=world["campaign"])

    assert quote.recipients == 7
    assert quote.excluded == {"opted_out": 2, "invalid": 2, "duplicate": 4}
    # Dee's long store name takes her message to 2 segments.
    assert quote.segments_distribution == {1: 6, 2: 1}
    # AU 1 x (Ann, Bob, +61400000005, Eve) + AU 2 segments (Dee) + GB 2 (Gary) + NZ 1.5 (Kiri)
    assert quote.credits_needed == Decimal("9.50")
    assert quote.available == Decimal("100.00")
    assert quote.balance_after == Decimal("90.50")
    assert quote.encodings == {"GSM-7": 6, "UCS-2": 1}
    assert quote.non_gsm_characters == {"á": 1}
    assert quote.problems == []
    assert quote.warnings == []
    assert quote.personalised is True
    assert len(quote.invalid_numbers) == 2
    assert quote.invalid_numbers[0].startswith("'not-a-number' is not a phone number")


def test_every_entry_is_counted_exactly_once(world):
    quote = campaign_quote(campaign=world["campaign"])
    memberships = ListMembership.objects.count()
    extras = len(parse_extra_numbers(EXTRA_NUMBERS))
    assert (memberships, extras) == (7, 8)
    assert quote.recipients + sum(quote.excluded.values()) == memberships + extras


def test_recipients_are_rendered_priced_and_in_order(world):
    recipients = list(campaign_recipients(campaign=world["campaign"]))
    w = world
    assert recipients == [
        PlannedRecipient("+61400000001", w["ann"].pk, body_for("Ann", "Bondi"), "GSM-7", 1, 1),
        PlannedRecipient("+61400000002", w["bob"].pk, body_for("there", "our shop"), "GSM-7", 1, 1),
        PlannedRecipient("+61400000004", w["dee"].pk, body_for("Dee", LONG_STORE), "GSM-7", 2, 2),
        PlannedRecipient("+447400123190", w["gary"].pk, body_for("Gáry", "Bondi"), "UCS-2", 1, 2),
        PlannedRecipient(
            "+6421123456", w["kiri"].pk, body_for("Kiri", "Ponsonby"), "GSM-7", 1, Decimal("1.5")
        ),
        PlannedRecipient("+61400000005", None, body_for("there", "our shop"), "GSM-7", 1, 1),
        PlannedRecipient("+61400000006", w["eve"].pk, body_for("Eve", "Manly"), "GSM-7", 1, 1),
    ]
    assert (
        sum(r.credits for r in recipients) == campaign_quote(campaign=w["campaign"]).credits_needed
    )


def test_recipients_is_a_lazy_stream():
    assert not isinstance(campaign_recipients(campaign=None), list)  # generator: nothing ran yet


def test_static_body_is_measured_once_and_never_rendered(world, monkeypatch):
    campaign = world["campaign"]
    campaign.template = None
    campaign.body = "Flash sale today only! Reply STOP to opt out."
    campaign.save()

    def refuse(*args, **kwargs):
        raise AssertionError("a body without placeholders must not be rendered per recipient")

    calls = []
    real_measure = quote_module.measure
    monkeypatch.setattr(CompiledTemplate, "render_values", refuse)
    monkeypatch.setattr(
        quote_module, "measure", lambda text: calls.append(text) or real_measure(text)
    )

    quote = campaign_quote(campaign=campaign)
    assert calls == [campaign.body]
    assert quote.recipients == 7
    assert quote.personalised is False
    assert quote.segments_distribution == {1: 7}
    assert quote.credits_needed == Decimal("8.50")  # 5 x AU 1 + GB 2 + NZ 1.5
    assert {r.body for r in campaign_recipients(campaign=campaign)} == {campaign.body}


def test_missing_values_without_default_are_warned(world):
    campaign = world["campaign"]
    campaign.template = None
    campaign.body = "Hi {{ first_name }}, see you at {{ store }}."
    campaign.save()
    quote = campaign_quote(campaign=campaign)
    assert quote.warnings == [
        "2 messages will have nothing for {{ first_name }} (no value and no default): add a "
        'default such as {{ first_name|default:"..." }}.',
        "2 messages will have nothing for {{ store }} (no value and no default): add a "
        'default such as {{ store|default:"..." }}.',
    ]
    assert quote.problems == []


def test_not_enough_credits_is_a_problem_with_the_numbers(world, make_account):
    campaign = world["campaign"]
    campaign.account = make_account(balance=Decimal("5"), default_sender="Acme")
    campaign.save()
    quote = campaign_quote(campaign=campaign)
    assert quote.credits_needed == Decimal("8.00")  # no country rates on this account
    assert quote.balance_after == Decimal("-3.00")
    assert quote.problems == [
        f"This campaign needs 8.00 credits but {campaign.account.name} has 5.00 available "
        "(5.00 balance, 0.00 reserved). Top up 3.00 credits or reduce the recipients."
    ]


def test_unknown_placeholders_and_bad_sender_are_problems(world):
    campaign = world["campaign"]
    campaign.template = None
    campaign.body = "Hi {{ nickname }}"
    campaign.sender = "Acme Pizza Company"[:15]
    campaign.save()
    problems = campaign_quote(campaign=campaign).problems
    assert problems[0].startswith("Unknown placeholder: {{ nickname }}.")
    assert problems[1].startswith("The sender ID 'Acme Pizza Comp' contains ' '")
    assert len(problems) == 3  # ... and 15 characters is too long for an alphanumeric sender


def test_empty_body_and_no_recipients_are_problems(make_account):
    campaign = Campaign.objects.create(name="Empty", account=make_account(balance=1))
    problems = campaign_quote(campaign=campaign).problems
    assert problems == ["The message is empty: write a text or choose a template that has one."]
    campaign.body = "Hello"
    campaign.extra_numbers = "nope, +61400000099"
    campaign.save()
    OptOut.objects.create(phone="+61400000099")
    quote = campaign_quote(campaign=campaign)
    assert quote.problems == [
        "There are no recipients: choose a contact list or add numbers "
        "(1 opted out, 1 invalid excluded)."
    ]


def test_messages_too_long_for_the_provider_are_counted(world):
    campaign = world["campaign"]
    campaign.account.backend = "thesmsworks"
    campaign.account.save()
    campaign.template = None
    campaign.body = "{{ store }}" + "y" * 1200
    campaign.save()
    quote = campaign_quote(campaign=campaign)
    # Only Dee's 150-character store pushes her message past 1280 characters.
    assert quote.problems == [
        "1 of the messages (the longest) is 1350 characters; The SMS Works accepts at most "
        "1280 characters per message. Shorten it by 70 characters."
    ]


def test_inactive_account_is_a_problem(world):
    campaign = world["campaign"]
    campaign.account.is_active = False
    campaign.account.save()
    assert campaign_quote(campaign=campaign).problems == [
        f"The provider account {campaign.account.name} is inactive: activate it first."
    ]


def test_as_dict_is_a_json_snapshot(world):
    data = campaign_quote(campaign=world["campaign"]).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["segments_distribution"] == {"1": 6, "2": 1}
    assert data["credits_needed"] == "9.50"
    assert data["balance_after"] == "90.50"
    assert data["excluded"] == {"opted_out": 2, "invalid": 2, "duplicate": 4}
    assert data["body"] == BODY
    assert data["account_id"] == world["account"].pk


def test_parse_extra_numbers_accepts_lines_commas_and_semicolons():
    assert parse_extra_numbers(" 0400 000 001 ,\r\n\n+61400000002;0400000003, ") == [
        "0400 000 001",
        "+61400000002",
        "0400000003",
    ]


@pytest.mark.parametrize(
    "phone",
    [
        "+61400000001",  # AU mobile
        "+61891640123",  # CX (shares +61 with AU)
        "+61891620123",  # CC
        "+447400123190",  # GB
        "+441481256789",  # GG (shares +44)
        "+447781123456",  # GG mobile
        "+390612345678",  # IT
        "+390669812345",  # VA (shares +39, leading zero)
        "+14165550123",  # CA
        "+12025550123",  # US
        "+18765550123",  # JM
        "+77012345678",  # KZ
        "+74951234567",  # RU
        "+6421123456",  # NZ
        "+33612345678",  # FR
    ],
)
def test_rate_resolver_agrees_with_phone_region(make_account, phone):
    rates = {"AU": "1.10", "CX": "1.20", "CC": "1.30", "GB": "2", "GG": "2.5", "IT": "3"}
    rates |= {"VA": "3.5", "CA": "4", "JM": "4.5", "KZ": "5", "NZ": "5.5"}
    account = make_account(credits_per_segment=Decimal("0.80"), country_rates=rates)
    assert RateResolver(account)(phone) == account.rate_for_region(phone_region(phone))
