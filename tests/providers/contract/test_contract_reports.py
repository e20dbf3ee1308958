"""The backend contract for what comes back: delivery statuses and replies.

The same cases for every registered backend, by each channel it has
(polled and/or pushed), with the provider's own payloads (the profiles):

- every documented status maps into the closed vocabulary, its raw code
  kept; an undocumented one is ``unknown`` with its raw code, and is stored
  on the message (not lost); a status for a message we do not know is
  ignored without a crash;
- a reply comes with the sender in E.164, its text and its time (in the
  right zone), is stored once however often the provider repeats it,
  linked to the campaign that reached the number, and a STOP opts out;
- webhooks need our URL token, and the provider's signature where it signs.

A channel the provider does not have is skipped with the doc's reason
(``not_applicable`` of its profile).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from campaigns.engine import campaign_dispatch
from campaigns.models import InboundMessage, Message
from campaigns.reports import statuses_apply
from campaigns.services import campaign_send_now
from contacts.models import OptOut
from providers.backends import backend_class
from providers.backends.base import (
    Capability,
    DeliveryStatus,
    InboundSms,
    OutboundSms,
    ProviderRef,
    SendOutcome,
    StatusUpdate,
    WebhookForbidden,
)
from tests.campaigns.engine_helpers import (  # noqa: F401
    enqueue_calls,
    enqueued,
    make_campaign,
)
from tests.providers.contract.profiles import ContractProfile, load_profiles

pytestmark = pytest.mark.django_db

PROFILES = load_profiles()

#: Case → the capability that gives a backend that channel.
CHANNELS = {
    "status_poll": Capability.DLR_POLL,
    "status_webhook": Capability.DLR_WEBHOOK,
    "reply_poll": Capability.REPLIES_POLL,
    "reply_webhook": Capability.REPLIES_WEBHOOK,
}


@pytest.fixture(params=sorted(settings.SMS_BACKENDS))
def profile(request) -> ContractProfile:
    key = request.param
    if key not in PROFILES:
        pytest.fail(f"Backend {key!r} has no contract profile (see profiles.py).")
    return PROFILES[key]()


def channel(profile: ContractProfile, case: str) -> None:
    """Skip ``case`` when the backend has no such channel, with the doc's
    reason; a channel it claims cannot be skipped."""
    if case in profile.not_applicable:
        pytest.skip(f"{profile.key}: {profile.not_applicable[case]}")
    assert backend_class(profile.key).supports(CHANNELS[case]), (
        f"{profile.key} has no {case}: give the reason from its doc in not_applicable"
    )


def send_one(profile: ContractProfile, number_index: int = 0):
    sms = OutboundSms(
        reference=f"m{number_index + 1}",
        to=profile.numbers[number_index],
        body="Hello from the contract",
        sender="Acme",
    )
    [sent] = profile.backend().send([sms])
    assert sent.outcome == SendOutcome.ACCEPTED, sent
    return sent, sms


def ref_of(sent, sms) -> ProviderRef:
    return ProviderRef(
        provider_ref=sent.provider_ref,
        provider_batch_ref=sent.provider_batch_ref,
        reference=sms.reference,
        to=sms.to,
    )


def polled(profile, sent, sms, raw) -> StatusUpdate:
    profile.report_status(sent, sms, raw)
    updates = profile.backend().fetch_statuses([ref_of(sent, sms)])
    assert len(updates) == 1, updates
    return updates[0]


def pushed(profile, rf, sent, sms, raw) -> StatusUpdate:
    request = profile.status_webhook(sent, sms, raw).request(rf)
    backend = profile.backend()
    backend.verify_webhook(request)
    [update] = backend.parse_webhook(request)
    assert isinstance(update, StatusUpdate)
    return update


def get_status(profile, rf, case, sent, sms, raw) -> StatusUpdate:
    return (
        polled(profile, sent, sms, raw)
        if case == "status_poll"
        else pushed(profile, rf, sent, sms, raw)
    )


def matches(update: StatusUpdate, sent, sms) -> bool:
    """Whether ``statuses_apply`` can find the message this update is about."""
    return bool(
        (update.provider_ref and update.provider_ref == sent.provider_ref)
        or (update.reference and update.reference == sms.reference)
        or (sent.provider_batch_ref and update.to == sms.to)
    )


# ------------------------------------------------------------------ statuses


@pytest.mark.parametrize("case", ["status_poll", "status_webhook"])
def test_every_documented_status_maps_into_the_vocabulary_raw_code_kept(profile, rf, case):
    channel(profile, case)
    assert profile.statuses, f"{profile.key}: list the doc's statuses in the profile"
    for raw, expected in profile.statuses.items():
        sent, sms = send_one(profile)
        update = get_status(profile, rf, case, sent, sms, raw)
        assert (update.status, update.raw_status.upper()) == (expected, raw.upper()), raw
        assert isinstance(update.status, DeliveryStatus)
        assert matches(update, sent, sms), update


@pytest.mark.parametrize("case", ["status_poll", "status_webhook"])
def test_an_undocumented_status_is_unknown_with_its_raw_code(profile, rf, case):
    channel(profile, case)
    sent, sms = send_one(profile)
    update = get_status(profile, rf, case, sent, sms, profile.undocumented_status)
    assert update.status == DeliveryStatus.UNKNOWN
    assert update.raw_status.upper() == profile.undocumented_status.upper()
    assert matches(update, sent, sms)


def test_polling_a_message_the_provider_does_not_know_is_no_crash(profile):
    channel(profile, "status_poll")
    sent, _sms = send_one(profile)
    stranger = ProviderRef(
        provider_ref=f"{sent.provider_ref}0404" if sent.provider_ref else "",
        provider_batch_ref=f"{sent.provider_batch_ref}0404" if sent.provider_batch_ref else "",
        reference="m404",
        to=profile.numbers[5],
    )
    updates = profile.backend().fetch_statuses([stranger])
    assert all(u.provider_ref != sent.provider_ref for u in updates)


# -------------------------------------------------- statuses, applied and kept


@pytest.fixture
def campaign_sent(profile, make_account, superuser, enqueued):  # noqa: F811
    """One campaign of two recipients sent through ``profile``'s backend, and
    the account (with the profile's credentials)."""

    def make():
        account = make_account(balance=Decimal("100"), requests_per_second=0, messages_per_second=0)
        account.backend = profile.key
        account.credentials = dict(profile.credentials or getattr(profile, "knobs", {}))
        account.save(update_fields=["backend", "credentials"])
        campaign = make_campaign(
            account=account, phones=list(profile.numbers[:2]), body="Hello from the contract"
        )
        campaign_send_now(campaign=campaign, user=superuser)
        backend = profile.backend()
        for _ in range(5):
            if campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done":
                break
        messages = list(Message.objects.filter(campaign=campaign).order_by("pk"))
        assert {m.status for m in messages} == {Message.Status.SENT}, messages
        return account, campaign, messages

    return make


def as_sent(message: Message):
    from providers.backends.base import accepted_result

    sms = OutboundSms(reference=f"m{message.pk}", to=message.phone, body=message.body)
    sent = accepted_result(
        sms,
        provider_ref=message.provider_ref,
        provider_batch_ref=message.provider_batch_ref,
    )
    return sent, sms


@pytest.mark.parametrize("case", ["status_poll", "status_webhook"])
def test_an_undocumented_status_is_stored_on_its_message_not_lost(profile, rf, case, campaign_sent):
    channel(profile, case)
    account, _campaign, messages = campaign_sent()
    sent, sms = as_sent(messages[0])
    update = get_status(profile, rf, case, sent, sms, profile.undocumented_status)
    statuses_apply(account=account, updates=[update])
    first, second = (Message.objects.get(pk=m.pk) for m in messages)
    assert first.raw_status.upper() == profile.undocumented_status.upper()
    assert first.report_unmapped  # shown to staff, polled on the decaying schedule
    assert first.status in (Message.Status.SENT, Message.Status.UNKNOWN)
    assert second.raw_status.upper() != profile.undocumented_status.upper()


def test_a_status_webhook_for_a_message_we_do_not_know_is_ignored(profile, client, campaign_sent):
    channel(profile, "status_webhook")
    account, campaign, messages = campaign_sent()
    stranger = messages[0]
    sent, sms = as_sent(stranger)
    sent = type(sent)(
        **{
            **{f: getattr(sent, f) for f in sent.__slots__},
            "provider_ref": f"{sent.provider_ref}0404" if sent.provider_ref else "",
            "provider_batch_ref": f"{sent.provider_batch_ref}0404"
            if sent.provider_batch_ref
            else "",
        }
    )
    sms = OutboundSms(reference="m999999", to=profile.numbers[7], body=sms.body)
    hook = profile.status_webhook(sent, sms, next(iter(profile.statuses)))
    hook = sign_if_needed(profile, account, hook)
    response = hook.send(client, hook_url(account, "status"))
    assert response.status_code == 200, response.content
    assert {m.status for m in Message.objects.filter(campaign=campaign)} == {Message.Status.SENT}


# ------------------------------------------------------------------- replies

AT = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


def received_at(profile, at: datetime = AT) -> datetime:
    return at.astimezone(ZoneInfo(profile.reply_time_zone))


def just_after_the_send() -> datetime:
    """A reply time after the campaign went out (a reply is linked to a
    message sent before it)."""
    return (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)


def test_a_polled_reply_has_the_senders_e164_number_text_and_time(profile):
    channel(profile, "reply_poll")
    sender = profile.numbers[0]
    profile.add_reply(sender=sender, body="Yes please", at=received_at(profile), ref="r-1")
    replies = profile.backend().fetch_replies()
    assert [(r.from_number, r.body) for r in replies] == [(sender, "Yes please")]
    assert replies[0].received_at == AT  # same instant, whatever zone it was written in
    assert replies[0].provider_ref


def test_a_pushed_reply_has_the_senders_e164_number_text_and_time(profile, rf):
    channel(profile, "reply_webhook")
    sender = profile.numbers[0]
    hook = profile.reply_webhook(
        sender=sender, body="Yes please", at=received_at(profile), ref="r-1"
    )
    backend = profile.backend()
    [reply] = backend.parse_webhook(hook.request(rf))
    assert isinstance(reply, InboundSms)
    assert (reply.from_number, reply.body) == (sender, "Yes please")
    if profile.webhook_reply_times:
        assert reply.received_at == AT
    else:  # stamped on arrival
        assert abs((reply.received_at - datetime.now(UTC)).total_seconds()) < 60
    assert reply.provider_ref


def hook_url(account, kind: str) -> str:
    return f"/hooks/{account.backend}/{account.webhook_token}/{kind}/"


def sign_if_needed(profile, account, hook):
    secret = account.credentials.get("webhook_secret")
    return profile.sign(hook, secret=secret) if secret else hook


def test_a_reply_webhook_is_stored_once_linked_and_a_stop_opts_out(profile, client, campaign_sent):
    channel(profile, "reply_webhook")
    account, campaign, messages = campaign_sent()
    sender = messages[0].phone
    sent, _ = as_sent(messages[0])
    hook = profile.reply_webhook(
        sender=sender,
        body="STOP",
        at=received_at(profile, just_after_the_send()),
        ref="r-stop",
        sent=sent,
    )
    hook = sign_if_needed(profile, account, hook)
    for _ in range(2):  # the provider retries: stored once
        response = hook.send(client, hook_url(account, "inbound"))
        assert response.status_code == 200, response.content
    [stored] = InboundMessage.objects.filter(account=account)
    assert (stored.phone, stored.body) == (sender, "STOP")
    assert stored.campaign_id == campaign.pk
    assert OptOut.objects.filter(phone=sender).exists()


# ------------------------------------------------------------ verification


def test_a_webhook_needs_our_url_token(profile, client, campaign_sent):
    kinds = [c for c in ("status_webhook", "reply_webhook") if c not in profile.not_applicable]
    kinds = [c for c in kinds if backend_class(profile.key).supports(CHANNELS[c])]
    if not kinds:
        pytest.skip(f"{profile.key} offers no webhook")
    account, _campaign, messages = campaign_sent()
    sent, sms = as_sent(messages[0])
    if kinds[0] == "status_webhook":
        hook, kind = profile.status_webhook(sent, sms, next(iter(profile.statuses))), "status"
    else:
        hook = profile.reply_webhook(sender=sms.to, body="hi", at=received_at(profile), ref="r9")
        kind = "inbound"
    hook = sign_if_needed(profile, account, hook)
    forged = f"/hooks/{account.backend}/{account.webhook_token[:-2]}xx/{kind}/"
    assert hook.send(client, forged).status_code == 403
    assert hook.send(client, hook_url(account, kind)).status_code == 200
    assert not InboundMessage.objects.filter(body="hi").count() > 1


def test_a_signing_provider_s_unsigned_or_forged_call_is_refused(profile, rf):
    if not profile.signing_credentials:
        pytest.skip(f"{profile.key}: {profile.not_applicable.get('signature', 'no signature')}")
    secret = next(iter(profile.signing_credentials.values()))
    backend = type(profile.backend())(
        credentials={**profile.credentials, **profile.signing_credentials},
        transport=profile.fake.transport,
    )
    sent, sms = send_one(profile)
    hook = profile.status_webhook(sent, sms, next(iter(profile.statuses)))
    backend.verify_webhook(profile.sign(hook, secret=secret).request(rf))  # passes
    for bad in (hook, profile.sign(hook, secret="another-secret")):
        with pytest.raises(WebhookForbidden):
            backend.verify_webhook(bad.request(rf))
