from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from providers.fields import EncryptedJSONField


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


def backend_choices() -> list[tuple[str, str]]:
    return [(key, key) for key in settings.SMS_BACKENDS]


class ProviderAccountQuerySet(models.QuerySet):
    def visible_to(self, user) -> ProviderAccountQuerySet:
        """Accounts ``user`` may see: all for staff with the global permission,
        otherwise the accounts it owns and their sub-accounts."""
        if user.is_superuser or user.has_perm("providers.view_all_accounts"):
            return self
        return self.filter(Q(owners=user) | Q(parent__owners=user)).distinct()


class ProviderAccount(models.Model):
    """An account at an SMS provider (or the simulator), with its credit balance.

    A reseller account owns sub-accounts (``parent``); its owners may move
    credits from it to them. ``balance`` and ``reserved`` are only ever changed
    by the services in :mod:`providers.services`, which write the ledger.
    """

    name = models.CharField(max_length=200, unique=True)
    backend = models.CharField(max_length=40, choices=backend_choices, default="simulator")
    credentials = EncryptedJSONField(
        default=dict,
        blank=True,
        help_text="Provider credentials (e.g. username/password), encrypted at rest with "
        "CREDENTIALS_KEYS. Never shown after saving.",
    )
    base_url = models.URLField(blank=True, help_text="Leave empty for the provider's default.")
    default_sender = models.CharField(max_length=15, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="sub_accounts",
        help_text="The reseller account this is a sub-account of.",
    )
    owners = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="provider_accounts",
        help_text="Users (resellers) who manage this account and its sub-accounts.",
    )
    is_active = models.BooleanField(default=True)

    # Pace: shared by every worker through the cache (see campaigns.pacing).
    requests_per_second = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("5"),
        help_text="API calls per second at most (0 = the provider's own limit only).",
    )
    messages_per_second = models.PositiveIntegerField(
        default=100, help_text="Recipients per second at most (0 = no limit)."
    )
    # Quiet hours, in the recipient's local time.
    send_window_start = models.TimeField(null=True, blank=True)
    send_window_end = models.TimeField(null=True, blank=True)
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="Used for quiet hours when a number's country spans several time zones.",
    )

    # Pricing: credits per SMS segment, by destination country.
    credits_per_segment = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("1"))
    country_rates = models.JSONField(
        default=dict,
        blank=True,
        help_text='Credits per segment by country code, e.g. {"GB": "2", "US": "1.5"}.',
    )
    # Floors a reseller's client prices must respect (set by staff on the
    # reseller account; 0 / empty = no floor).
    min_credits_per_segment = models.DecimalField(
        "lowest client price per segment",
        max_digits=8,
        decimal_places=2,
        default=Decimal("0"),
        help_text="On a reseller account: the lowest credits per segment its clients may be "
        "charged (0 = no floor).",
    )
    min_country_rates = models.JSONField(
        "lowest client price by country",
        default=dict,
        blank=True,
        help_text='On a reseller account: per-country floors, e.g. {"GB": "2"}.',
    )

    balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    reserved = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    low_balance_threshold = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Warn the owners when the available balance falls below this (0 = never).",
    )
    low_balance_emails = models.TextField(
        "warn these e-mail addresses",
        blank=True,
        help_text="Comma-separated addresses warned when the balance runs low. Empty: the "
        "account's owners and its reseller's owners.",
    )
    low_balance_notified_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What the provider last said the balance was (credits_reconcile); never
    # copied into ``balance``: a difference is reported, not overwritten.
    provider_balance = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, editable=False
    )
    provider_balance_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Our balance at the moment the provider answered: drift compares these
    # two, never an old provider answer with today's balance.
    provider_balance_ours = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, editable=False
    )

    # What the provider says about the account (backend.account_settings(),
    # refreshed by providers.account_settings); None = not known.
    provider_allows_unicode = models.BooleanField(null=True, blank=True, editable=False)
    provider_allows_international = models.BooleanField(null=True, blank=True, editable=False)
    provider_home_country = models.CharField(max_length=2, blank=True, editable=False)
    provider_settings_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    message_validity = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Minutes the provider keeps trying to deliver a message, where it takes a "
        "validity (The SMS Works). Empty: the provider's default.",
    )
    provider_time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="The time zone the provider's timestamps are in (SMS Everyone: the zone "
        "it set for your account, e.g. Australia/Sydney or UTC). Empty: the backend's default.",
    )

    webhook_token = models.CharField(
        max_length=64, unique=True, default=new_webhook_token, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProviderAccountQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [
            ("view_all_accounts", "Can see every provider account, not only owned ones"),
            ("top_up_account", "Can move credits to owned sub-accounts"),
            ("add_credits", "Can add credits to any account (e.g. after a payment)"),
            ("adjust_credits", "Can correct any account's credits with a reason"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="account_balance_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0) & Q(reserved__lte=models.F("balance")),
                name="account_reserved_within_balance",
            ),
        ]

    #: Written only by :mod:`providers.services`, with a row lock and a ledger row.
    CREDIT_FIELDS = frozenset(
        {
            "balance",
            "reserved",
            "low_balance_notified_at",
            "provider_balance",
            "provider_balance_checked_at",
            "provider_balance_ours",
        }
    )

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        """Saving an existing account never writes the credit fields.

        An instance read before a concurrent top-up and saved after it (an
        admin edit of the name, say) would otherwise write its stale balance
        back and create or destroy credits. Those fields change only through
        the services, with ``UPDATE`` under a row lock.
        """
        if self.pk is not None and not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.CREDIT_FIELDS
            ]
        super().save(*args, **kwargs)

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    @property
    def is_low(self) -> bool:
        """Available credits under the warning threshold (a 0 threshold never warns)."""
        return self.low_balance_threshold > 0 and self.available < self.low_balance_threshold

    @property
    def provider_drift(self) -> Decimal | None:
        """Provider balance minus ours *at the moment of the last check* (None:
        never checked, or checked before we kept our side of the snapshot).

        Comparing an old provider answer with today's balance would report
        every campaign and top-up since the check as drift."""
        if self.provider_balance is None or self.provider_balance_ours is None:
            return None
        return self.provider_balance - self.provider_balance_ours

    def floor_for_region(self, region: str | None) -> Decimal:
        """On a reseller account: the lowest price per segment its clients may
        be charged for a destination country."""
        if region and region in (self.min_country_rates or {}):
            return Decimal(str(self.min_country_rates[region]))
        return self.min_credits_per_segment

    def rate_for_region(self, region: str | None) -> Decimal:
        """Credits per segment for a destination country (``"AU"``)."""
        if region and region in (self.country_rates or {}):
            return Decimal(str(self.country_rates[region]))
        return self.credits_per_segment

    def get_backend(self, **options):
        from providers.backends import get_backend
        from smsoffice.logredact import register_secrets

        backend = get_backend(self, **options)
        # From now on this process masks these credentials in every log line.
        register_secrets(backend.secrets())
        return backend


class ClientAccount(ProviderAccount):
    """A reseller's client: a sub-account seen through the reseller
    self-service admin (its own permissions, its own page)."""

    class Meta:
        proxy = True
        verbose_name = "client account"


class CreditTransaction(models.Model):
    """One append-only ledger row. ``balance`` is the sum of ``amount`` and
    ``reserved`` the sum of ``reserved_change`` over an account's rows."""

    class Kind(models.TextChoices):
        TOP_UP = "top_up", "Top-up"
        TRANSFER_OUT = "transfer_out", "Transfer to sub-account"
        TRANSFER_IN = "transfer_in", "Transfer from reseller"
        RESERVE = "reserve", "Reserve for campaign"
        CHARGE = "charge", "Charge for sent messages"
        RELEASE = "release", "Release of unused reservation"
        REFUND = "refund", "Refund from provider"
        ADJUSTMENT = "adjustment", "Staff adjustment"
        PROVIDER_SYNC = "provider_sync", "Provider balance sync"
        RETURN_OUT = "return_out", "Returned to the reseller"
        RETURN_IN = "return_in", "Returned by a sub-account"

    account = models.ForeignKey(ProviderAccount, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Change to the balance (negative = credits leave the account).",
    )
    reserved_change = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Change to the reserved credits.",
    )
    balance_after = models.DecimalField(max_digits=14, decimal_places=2)
    reserved_after = models.DecimalField(max_digits=14, decimal_places=2)
    counterparty = models.ForeignKey(
        ProviderAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(
        max_length=100, blank=True, db_index=True, help_text='What it pays for, e.g. "campaign:12".'
    )
    idempotency_key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    provider_response = models.JSONField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "credit transaction"
        indexes = [models.Index(fields=["account", "-id"])]
        constraints = [
            models.CheckConstraint(
                condition=~(Q(amount=0) & Q(reserved_change=0)),
                name="ledger_row_moves_credits",
            ),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0)
                & Q(reserved_after__gte=0)
                & Q(reserved_after__lte=models.F("balance_after")),
                name="ledger_row_after_within_bounds",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} on {self.account}"


class TopUpIntent(models.Model):
    """A provider top-up in flight: claimed (with its idempotency key) before
    the provider is called, settled into the ledger after, outside any lock.

    States::

        pending ──provider said yes──▶ confirmed ──recorded──▶ applied
           │  └──provider said no───▶ refused
           └──no clear answer / crash──▶ unknown ──a person (or the reconcile
                                                    task with the provider's
                                                    answer) decides──▶ applied | refused

    While an intent is open the reseller's credits of a transfer are reserved
    under ``topup:<pk>``, so they cannot be spent twice.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending: the provider is being called"
        CONFIRMED = "confirmed", "Confirmed by the provider, being recorded"
        APPLIED = "applied", "Applied"
        REFUSED = "refused", "Refused (nothing added)"
        UNKNOWN = "unknown", "Unknown: the provider may have added them (being checked)"

    OPEN = (State.PENDING, State.CONFIRMED, State.UNKNOWN)

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.PROTECT, related_name="topup_intents"
    )
    source = models.ForeignKey(
        ProviderAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The reseller account the credits come from (a transfer); empty for a top-up.",
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    idempotency_key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    backend = models.CharField(max_length=40)
    provider_response = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    note = models.TextField(blank=True)
    ledger_row = models.ForeignKey(
        CreditTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    settled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        verbose_name = "provider top-up"
        indexes = [models.Index(fields=["state", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="topup_intent_amount_positive")
        ]

    def __str__(self) -> str:
        return f"Top-up #{self.pk} of {self.amount} on {self.account} ({self.state})"

    @property
    def reference(self) -> str:
        """The ledger reference of what this intent holds on its source."""
        return f"topup:{self.pk}"


class SimulatorState(models.Model):
    """One value of the simulator's state (balance, sent references, replies,
    batches, opt-outs, lists), read and written through
    :class:`providers.simulator_store.SimulatorStore`.

    In the database rather than the cache: a bounded cache evicts entries,
    and the simulator lost its balance and its crash-reconciliation records.
    """

    key = models.CharField(max_length=250, primary_key=True)
    value = models.JSONField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "simulator state"

    def __str__(self) -> str:
        return self.key


class ApiToken(models.Model):
    """A per-user token for the reseller JSON API (``providers.api``).

    Only a SHA-256 of the token is stored; the token itself is shown once,
    when it is made (``providers.services.api_tokens.api_token_create``).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What it is for, e.g. 'billing system'.")
    prefix = models.CharField(max_length=8, editable=False, help_text="Its first characters.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"
