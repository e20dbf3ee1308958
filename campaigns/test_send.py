"""Test send: one draft's message, rendered for a chosen contact, sent to a
staff member's own number.

It is a one-recipient campaign of kind "test" sent through the normal
:func:`campaigns.services.campaign_send_now`, so the engine, the credits and
the ledger apply unchanged (it is charged like any message), while the
draft's own counters and report never see it: they count the draft's
recipients only. The draft's events record the test send.
"""

from __future__ import annotations

from django.db import transaction

from campaigns.models import Campaign, CampaignEvent
from campaigns.services import CampaignError, campaign_send_now
from campaigns.templating import contact_context, render
from contacts.models import Contact


def campaign_test_send(*, campaign: Campaign, contact: Contact, phone: str, user) -> Campaign:
    """Send ``campaign``'s message as ``contact`` would get it to ``phone``;
    returns the test campaign (kind "test"), already scheduled to send now.

    Only a draft may be tested; the number must be one the engine can send to
    (``campaign_send_now`` quotes it and refuses with the reason otherwise,
    e.g. a short balance, and then nothing is kept)."""
    if campaign.status != Campaign.Status.DRAFT:
        raise CampaignError(
            "Only a draft can be sent as a test; this campaign is "
            f"{campaign.get_status_display().lower()}."
        )
    phone = (phone or "").strip()
    if not phone:
        raise CampaignError("Enter the number the test message goes to (your own).")
    body = render(
        campaign.effective_body,
        contact_context(
            first_name=contact.first_name,
            last_name=contact.last_name,
            phone=contact.phone,
            email=contact.email,
            custom_fields=contact.custom_fields,
        ),
        campaign.template.defaults if campaign.template_id else None,
    )
    with transaction.atomic():
        test = Campaign.objects.create(
            name=f"Test of {campaign.name}"[:200],
            kind=Campaign.Kind.TEST,
            account=campaign.account,
            sender=campaign.effective_sender,
            body=body,
            extra_numbers=phone,
            created_by=user if getattr(user, "pk", None) else None,
        )
        campaign_send_now(campaign=test, user=user)
        CampaignEvent.objects.create(
            campaign=campaign,
            action="test_send",
            from_status=campaign.status,
            to_status=campaign.status,
            user=user if getattr(user, "pk", None) else None,
            detail=f"Test message as {contact.phone} sent to {phone} (test campaign #{test.pk}).",
        )
    return test
