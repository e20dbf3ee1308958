"""Provider-side opt-out lists brought into the local opt-outs.

Some providers keep their own opt-out list and wash every send against it
(SMS Everyone: "All SMS messages are washed against your optout database at
the time of sending"); a number the provider dropped is recorded ``skipped``
by the engine (``ErrorKind.OPTED_OUT``). Without this sync, the number would
be planned, reserved and offered to the provider again by every campaign.
The other way, a number opted back in here is taken off the provider's
list, or the provider would go on dropping it.
This module lives in ``campaigns`` because it joins providers and contacts,
and only ``campaigns`` imports both.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured, ValidationError

from contacts.models import OptOut, OptOutEvent
from contacts.phones import try_normalize_phone
from contacts.services import optout_add
from providers.backends import backend_class
from providers.backends.base import Capability, ProviderError, RemoteOptOut, SmsBackend
from providers.models import ProviderAccount

logger = logging.getLogger("campaigns.provider_optouts")


def provider_optouts_sync(*, account: ProviderAccount, backend: SmsBackend | None = None) -> int:
    """Bring ``account``'s provider opt-out list and the local opt-outs into step.

    A number on the provider's list and not opted out here is either

    - opted back in here after the provider listed it (the number's latest
      opt-out history entry lifts an opt-out: staff removed it, or a START
      lifted a STOP, later than the provider's ``Added`` time): the person's
      newer wish wins, and the number is taken off the provider's list
      (:meth:`~providers.backends.base.SmsBackend.optouts_remove`), since
      the provider washes every send against it; or
    - otherwise, added to the local opt-outs (source ``provider``, reference
      ``provider:<account id>``, the provider's reason kept).

    Numbers already opted out keep their first record; nothing local is
    ever removed here. Returns how many opt-outs were added locally. Raises
    ProviderError when the provider cannot answer, UnsupportedOperation when
    it has no such list.
    """
    backend = backend or account.get_backend()
    backend.require(Capability.OPTOUTS, "opt-out list")
    remote = backend.optouts_list()
    numbers = {}
    for entry in remote:
        phone = try_normalize_phone(entry.number)
        if phone:
            numbers.setdefault(phone, entry)
        else:
            logger.warning("Account %s: provider opt-out %r is not a number", account.pk, entry)
    known = set(OptOut.objects.filter(phone__in=list(numbers)).values_list("phone", flat=True))
    missing = {phone: entry for phone, entry in numbers.items() if phone not in known}
    opted_in = _opted_in_since_listed(missing)
    if opted_in:
        # A provider call: made outside any transaction (each optout_add
        # below is its own). A failure raises before anything is re-added.
        backend.optouts_remove(sorted(opted_in))
        logger.info(
            "Account %s: %s number(s) opted back in at the provider.", account.pk, len(opted_in)
        )
    added = 0
    for phone, entry in sorted(missing.items()):
        if phone in opted_in:
            continue
        reason = f"On the opt-out list at {account.name}"
        if entry.reason:
            reason += f" ({entry.reason})"
        try:
            optout_add(
                phone=phone,
                source=OptOut.Source.PROVIDER,
                reason=reason,
                source_reference=f"provider:{account.pk}",
            )
        except ValidationError:
            logger.warning("Account %s: provider opt-out %s refused locally", account.pk, phone)
            continue
        added += 1
    if added:
        logger.info("Account %s: %s provider opt-out(s) added locally.", account.pk, added)
    return added


def _opted_in_since_listed(entries: dict[str, RemoteOptOut]) -> set[str]:
    """The numbers of ``entries`` (provider opt-outs not opted out here) whose
    latest local history entry lifted an opt-out after the provider listed
    them (or at any time, when the provider gives no ``Added`` time)."""
    latest: dict[str, OptOutEvent] = {}
    events = OptOutEvent.objects.filter(phone__in=list(entries)).order_by("created_at", "id")
    for event in events:
        latest[event.phone] = event
    lifted = set()
    for phone, event in latest.items():
        if event.outcome != OptOutEvent.Outcome.LIFTED:
            continue
        listed_at = entries[phone].added_at
        if listed_at is None or event.created_at > listed_at:
            lifted.add(phone)
    return lifted


def sync_provider_optouts(account_ids: list[int] | None = None) -> dict:
    """django-q2 entry point: :func:`provider_optouts_sync` for every active
    account whose backend has an opt-out list (or only ``account_ids``). One
    account failing does not stop the others. Returns ``{"added": {name: n},
    "errors": {name: text}}``."""
    accounts = ProviderAccount.objects.filter(is_active=True).order_by("pk")
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    added: dict[str, int] = {}
    errors: dict[str, str] = {}
    for account in accounts:
        try:
            if not backend_class(account.backend).supports(Capability.OPTOUTS):
                continue
            added[account.name] = provider_optouts_sync(account=account)
        except (ProviderError, ImproperlyConfigured, ImportError) as exc:
            logger.warning("Could not sync the provider opt-outs of %s: %s", account.name, exc)
            errors[account.name] = str(exc)
    return {"added": added, "errors": errors}
