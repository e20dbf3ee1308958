from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from contacts.fields import E164PhoneField
from contacts.models import Contact, ContactList
from providers.models import ProviderAccount


class MessageTemplate(models.Model):
    """A reusable body with ``{{ placeholders }}`` for contact fields."""

    name = models.CharField(max_length=200, unique=True)
    body = models.TextField()
    defaults = models.JSONField(
        default=dict,
        blank=True,
        help_text='Values for placeholders a contact lacks, e.g. {"first_name": "there"}.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        CAMPAIGN = "campaign", "Campaign"
        REPLY = "reply", "Reply from the inbox"
        TEST = "test", "Test send"

    OPEN_STATUSES = (Status.DRAFT, Status.SCHEDULED, Status.SENDING, Status.PAUSED)

    name = models.CharField(max_length=200)
    # Replies and test sends are one-recipient campaigns so the engine, credits and
    # ledger apply unchanged; the Campaigns list hides them by default.
    kind = models.CharField(
        max_length=20, choices=Kind.choices, default=Kind.CAMPAIGN, editable=False, db_index=True
    )
    account = models.ForeignKey(
        ProviderAccount,
        on_delete=models.PROTECT,
        related_name="campaigns",
        verbose_name="provider account",
    )
    sender = models.CharField(
        max_length=15, blank=True, help_text="Sender ID; empty uses the account's default."
    )
    template = models.ForeignKey(
        MessageTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="campaigns"
    )
    body = models.TextField(
        blank=True, help_text="Message text; empty uses the template's. {{ first_name }} etc."
    )
    lists = models.ManyToManyField(ContactList, blank=True, related_name="campaigns")
    extra_numbers = models.TextField(
        blank=True, help_text="More numbers, one per line or separated by commas."
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # Set only by the confirmed Schedule action; pages show the time in it.
    schedule_time_zone = models.CharField(max_length=64, blank=True, editable=False)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    status_reason = models.CharField(max_length=500, blank=True)

    # The quote the user confirmed when sending/scheduling (JSON snapshot).
    confirmed_quote = models.JSONField(null=True, blank=True, editable=False)
    credits_reserved = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0"), editable=False
    )
    credits_charged = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0"), editable=False
    )

    # Counters, kept by the services that move messages between states.
    recipients_total = models.PositiveIntegerField(default=0, editable=False)
    queued_count = models.PositiveIntegerField(default=0, editable=False)
    sent_count = models.PositiveIntegerField(default=0, editable=False)
    delivered_count = models.PositiveIntegerField(default=0, editable=False)
    failed_count = models.PositiveIntegerField(default=0, editable=False)
    skipped_count = models.PositiveIntegerField(default=0, editable=False)
    cancelled_count = models.PositiveIntegerField(default=0, editable=False)
    unknown_count = models.PositiveIntegerField(default=0, editable=False)
    planned = models.BooleanField(default=False, editable=False)

    # Dispatch bookkeeping (campaigns.dispatch). One worker at a time holds the
    # lease; it expires on its own, so a worker that dies never blocks a campaign.
    dispatch_token = models.UUIDField(null=True, blank=True, editable=False)
    dispatch_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    next_dispatch_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When sending resumes after a wait (quiet hours, rate limit, retry backoff).",
    )
    # Distinct recipient time zones of the plan, for quiet hours.
    time_zones = models.JSONField(default=list, blank=True, editable=False)
    # Whole batches refused permanently in a row; too many fail the campaign.
    consecutive_failures = models.PositiveSmallIntegerField(default=0, editable=False)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        permissions = [("send_campaign", "Can send, schedule, pause, resume and cancel")]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_body(self) -> str:
        if self.body:
            return self.body
        return self.template.body if self.template_id else ""

    @property
    def effective_sender(self) -> str:
        return self.sender or self.account.default_sender


class Message(models.Model):
    """One recipient of one campaign. ``(campaign, phone)`` is unique, so a
    recipient can never be planned twice."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SUBMITTING = "submitting", "Submitting"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Undelivered"
        EXPIRED = "expired", "Expired"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"
        UNKNOWN = "unknown", "Unknown"

    # No index of its own: (campaign, phone), (campaign, status, id) and
    # (campaign, id) all start with it, and every index is written again on
    # each status change of each message.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    phone = E164PhoneField()
    body = models.TextField()
    encoding = models.CharField(max_length=5, default="GSM-7")
    segments = models.PositiveSmallIntegerField(default=1)
    credits = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    status_reason = models.CharField(max_length=255, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Send attempts that failed transiently (retried with backoff)."
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Not claimed before this (retry backoff)."
    )
    time_zone = models.CharField(
        max_length=64, blank=True, help_text="Recipient's time zone for quiet hours."
    )
    provider_ref = models.CharField(max_length=100, blank=True)
    provider_batch_ref = models.CharField(max_length=100, blank=True)
    raw_status = models.CharField(max_length=100, blank=True)
    raw_error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)
    report_unmapped = models.BooleanField(
        "unmapped report",
        default=False,
        help_text="The provider's last report maps to no status; its raw code and text are kept.",
    )
    next_poll_at = models.DateTimeField(
        null=True, blank=True, help_text="Delivery status not asked again before this."
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "phone"], name="one_message_per_recipient")
        ]
        indexes = [
            # Claiming the next batch and counting by state.
            models.Index(fields=["campaign", "status", "id"], name="msg_campaign_status"),
            # Applying provider reports.
            models.Index(
                fields=["provider_ref"], name="msg_provider_ref", condition=~Q(provider_ref="")
            ),
            # No (sent_at) WHERE status = 'sent' index for what is in flight:
            # polling walks (campaign, status, id); and with statistics from
            # before a dispatch (no message sent yet) PostgreSQL took it for
            # every report's ``id = ANY(...) AND status = 'sent'`` and scanned
            # all the sent messages each time (528 ms against 51 ms by primary
            # key for 2,000 reports at 1M messages).
            # Recovering batches whose worker died. Partial (only what is
            # out, a few batches), so that the planner never walks it for a
            # plain ``status = ...`` filter: without statistics SQLite would
            # walk a (status, ...) index over every queued message instead of
            # looking 500 ids up by primary key.
            models.Index(
                fields=["claimed_at"], name="msg_submitting", condition=Q(status="submitting")
            ),
            # A batch in flight by its claim token. Partial: the token is
            # cleared when a message leaves ``submitting``, so the index holds
            # only what is out and the record and report writes never touch
            # it (every index is written again on each non-HOT update).
            # ``claim_token = %s`` implies the condition on both databases.
            models.Index(
                fields=["claim_token"],
                name="msg_claim_token",
                condition=Q(claim_token__isnull=False),
            ),
            # A number's thread in the inbox: its newest messages first, read
            # 50 at a time by keyset (campaigns.thread), never sorting them all.
            # Its prefix serves every search by phone (no index of its own).
            models.Index(fields=["phone", "created_at", "id"], name="msg_phone_time"),
            # The Messages list of one campaign, newest first, paged.
            models.Index(fields=["campaign", "id"], name="msg_campaign_id"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} ({self.status})"


class InboundMessage(models.Model):
    """A reply received from a provider (webhook or poll)."""

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.PROTECT, related_name="inbound_messages"
    )
    phone = E164PhoneField()
    to_number = models.CharField(max_length=20, blank=True)
    body = models.TextField(blank=True)
    received_at = models.DateTimeField()
    provider_ref = models.CharField(max_length=100, blank=True)
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    in_reply_to = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    action = models.CharField(
        max_length=20, blank=True, help_text="opt_out / opt_in when the reply was a keyword."
    )
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "inbound message"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "provider_ref"],
                condition=~Q(provider_ref=""),
                name="unique_inbound_per_provider_ref",
            )
        ]
        indexes = [models.Index(fields=["phone", "-received_at"], name="inbound_phone")]

    def __str__(self) -> str:
        return f"{self.phone}: {self.body[:40]}"


class CampaignEvent(models.Model):
    """Audit trail: who did what to a campaign, when, from which state."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=40)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    detail = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.from_status}→{self.to_status}"


class CampaignDay(models.Model):
    """What happened to one campaign's messages on one day (the site's time
    zone): messages handed to the provider, receipts that said delivered, and
    messages that failed. Kept by :func:`campaigns.counters.counters_move` in
    the same transaction as the status change, so the dashboard reads a few
    hundred rows instead of counting a million messages."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "day"], name="one_row_per_campaign_day")
        ]
        indexes = [models.Index(fields=["day"], name="campaignday_day")]

    def __str__(self) -> str:
        return f"{self.campaign_id} on {self.day}"


class Conversation(models.Model):
    """The inbox row of one number on one account: replies and our answers.

    Kept by :mod:`campaigns.inbox` in the same transaction as the reply
    (``inbound_apply``) or our answer, so the inbox never reads the message
    tables to list itself.
    """

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.PROTECT, related_name="conversations"
    )
    phone = E164PhoneField()
    last_activity_at = models.DateTimeField()
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_inbound_text = models.TextField(blank=True)
    # What the last reply's keyword was (InboundMessage.action), so the list
    # says "STOP" without reading the replies table.
    last_inbound_action = models.CharField(max_length=20, blank=True, default="")
    last_campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    unread_count = models.PositiveIntegerField(default=0)
    handled = models.BooleanField(default=False)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-last_activity_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["account", "phone"], name="unique_conversation")
        ]
        indexes = [
            models.Index(fields=["-last_activity_at", "-id"], name="conversation_newest"),
            models.Index(fields=["phone"], name="conversation_phone"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} on {self.account}"
