from __future__ import annotations

from django.conf import settings
from django.db import models

from contacts.fields import E164PhoneField


class Contact(models.Model):
    """A person we can text. ``phone`` is E.164 and unique."""

    phone = E164PhoneField(unique=True, help_text="Any format; stored as E.164 (+61400123456).")
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    custom_fields = models.JSONField(
        default=dict,
        blank=True,
        help_text='Extra values for templates, e.g. {"store": "Parramatta"} for {{ store }}.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["last_name", "first_name"])]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name} ({self.phone})" if name else self.phone


class ContactList(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    contacts = models.ManyToManyField(
        Contact, through="ListMembership", related_name="lists", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="memberships")
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.CASCADE, related_name="memberships"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact_list", "contact"], name="unique_contact_per_list"
            )
        ]

    def __str__(self) -> str:
        return f"{self.contact} in {self.contact_list}"


class OptOut(models.Model):
    """A number that must never be texted again (until it opts back in).

    One row per number: the current opt-out, which sending checks. Its whole
    story (every STOP, START, staff entry and removal) is in
    :class:`OptOutEvent`, which is never changed or deleted, so removing an
    opt-out loses nothing. Only :mod:`contacts.services` writes either.
    """

    class Source(models.TextChoices):
        KEYWORD = "keyword", "STOP keyword reply"
        MANUAL = "manual", "Entered by staff"
        IMPORT = "import", "Imported"
        PROVIDER = "provider", "Reported by the provider"

    phone = E164PhoneField(unique=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    reason = models.CharField(max_length=255, blank=True)
    source_reference = models.CharField(
        max_length=100, blank=True, help_text="E.g. the inbound message that said STOP."
    )
    # The provider account a STOP reply came in on: only a START on that same
    # account may lift the opt-out. A plain id, as contacts does not depend on
    # providers.
    source_account_id = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "opt-out"

    def __str__(self) -> str:
        return self.phone


class OptOutEvent(models.Model):
    """One thing that happened to a number's opt-out; append-only history.

    ``outcome`` says what it did: a START that was not allowed to lift the
    opt-out is recorded too, with why.
    """

    class Action(models.TextChoices):
        OPT_OUT = "opt_out", "Opted out"
        OPT_IN = "opt_in", "Asked to opt back in (START)"
        REMOVED = "removed", "Opt-out removed by staff"

    class Outcome(models.TextChoices):
        OPTED_OUT = "opted_out", "Opted out"
        ALREADY = "already", "Already opted out: first record kept"
        LIFTED = "lifted", "Opt-out lifted"
        KEPT = "kept", "Opt-out kept"
        NOT_OPTED_OUT = "not_opted_out", "Was not opted out"

    phone = E164PhoneField(db_index=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    outcome = models.CharField(max_length=15, choices=Outcome.choices)
    source = models.CharField(max_length=20, choices=OptOut.Source.choices, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    source_reference = models.CharField(max_length=100, blank=True)
    account_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The provider account a keyword reply came in on."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "opt-out history entry"
        verbose_name_plural = "opt-out history"

    def __str__(self) -> str:
        return f"{self.phone}: {self.get_action_display()} ({self.get_outcome_display()})"


# The import job's models live with the import code; imported here so that
# Django registers them with the contacts app.
from contacts.importing.models import (  # noqa: E402, F401
    ImportChange,
    ImportFileChunk,
    ImportIssue,
    ImportJob,
    ImportRow,
)
