"""Polling providers that do not push: delivery statuses and replies.

Both are paced by the account's request rate (:mod:`campaigns.pacing`) and
apply what they get through :mod:`campaigns.reports`, exactly as webhooks do.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from campaigns import pacing
from campaigns.engine import clock
from campaigns.engine.common import S, message_reference
from campaigns.engine.pacer import CallPacer, prebooked
from campaigns.models import Campaign, Message
from providers.backends import backend_class
from providers.backends.base import Capability, ProviderError, ProviderRef
from providers.models import ProviderAccount

logger = logging.getLogger("campaigns.engine")

#: Message references per fetch_statuses call.
POLL_CHUNK = 500
#: Stop polling a message this long after it was sent (providers keep DLRs ~72 h).
POLL_MAX_AGE = timedelta(days=3)
#: One polling task stops starting new calls after this many seconds.
POLL_SLICE = 60.0
#: ... and the calls of the fetch in hand may start this long after.
POLL_CALL_GRACE = 10.0


def _accounts_with(capability: str) -> list[ProviderAccount]:
    accounts = []
    for account in ProviderAccount.objects.filter(is_active=True):
        try:
            cls = backend_class(account.backend)
        except Exception:  # a misconfigured backend must not stop the others
            logger.exception("Account %s: backend %r unavailable.", account.pk, account.backend)
            continue
        if cls.supports(capability):
            accounts.append(account)
    return accounts


def statuses_poll(*, backend=None, time_budget: float = POLL_SLICE) -> int:
    """For accounts whose backend polls delivery reports: ask about messages
    still ``sent`` (in chunks, campaign by campaign, oldest id first, resuming
    where the last run stopped) and apply the answers in bulk. Returns the
    updates applied."""
    from campaigns.reports import poll_due, polls_record, statuses_apply

    started = clock.monotonic()
    applied = 0
    since = timezone.now() - POLL_MAX_AGE
    for account in _accounts_with(Capability.DLR_POLL):
        be = backend or account.get_backend()
        limits = pacing.limits_for(account, type(be))
        # Each HTTP call of a poll is paced (a provider may need several per
        # fetch); the permit below books the first one.
        CallPacer(
            campaign_id=None,
            account_id=account.pk,
            limits=limits,
            deadline=started + time_budget + POLL_CALL_GRACE,
        ).attach(be)
        # The counter finds the campaigns with messages in flight; each query
        # below then runs on the (campaign, status, id) index.
        campaigns = Campaign.objects.filter(account=account, sent_count__gt=0).filter(
            Q(finished_at__isnull=True) | Q(finished_at__gte=since)
        )
        for campaign_id in campaigns.order_by("pk").values_list("pk", flat=True):
            cursor_key = f"poll:statuses:{campaign_id}:cursor"
            cursor = cache.get(cursor_key) or 0
            pending = poll_due(
                Message.objects.filter(campaign_id=campaign_id, status=S.SENT, sent_at__gte=since),
                now=timezone.now(),
            ).exclude(provider_ref="", provider_batch_ref="")  # batch members may lack their own id
            while clock.monotonic() - started < time_budget:
                rows = list(
                    pending.filter(pk__gt=cursor)
                    .order_by("pk")
                    .values_list("pk", "provider_ref", "provider_batch_ref", "phone", "sent_at")[
                        :POLL_CHUNK
                    ]
                )
                if not rows:
                    cursor = 0  # the next run starts from the beginning again
                    break
                permit = pacing.pace_acquire(account_id=account.pk, limits=limits)
                if not permit.granted:
                    break
                pacing.pace_wait(permit.wait)
                refs = [
                    ProviderRef(
                        provider_ref=ref,
                        provider_batch_ref=batch,
                        reference=message_reference(pk),
                        to=phone,
                    )
                    for pk, ref, batch, phone, _sent_at in rows
                ]
                try:
                    with prebooked(be):
                        updates = be.fetch_statuses(refs)
                except ProviderError as exc:
                    logger.warning("Account %s: status poll failed: %s", account.pk, exc)
                    if exc.kind == "rate_limit":
                        pacing.pace_block(account_id=account.pk, seconds=exc.retry_after or 30)
                    break
                # Asked: not again before its decaying interval (answered or not).
                polls_record(asked=[(row[0], row[4]) for row in rows], now=timezone.now())
                if updates:
                    applied += int(statuses_apply(account=account, updates=updates)["applied"])
                cursor = rows[-1][0]
            cache.set(cursor_key, cursor, timeout=None)
    return applied


def replies_poll(*, backend=None) -> int:
    """For accounts whose backend polls replies, at most once per the
    backend's ``min_reply_poll_interval`` (SMS Everyone: 60 s): fetch and
    store them (STOP opts out at once). Returns how many were stored."""
    from campaigns.reports import inbound_apply

    stored = 0
    for account in _accounts_with(Capability.REPLIES_POLL):
        cls = backend_class(account.backend)
        interval = cls.min_reply_poll_interval or pacing.DEFAULT_REPLY_POLL_INTERVAL
        if not pacing.reply_poll_due(account_id=account.pk, interval=interval):
            continue
        be = backend or account.get_backend()
        limits = pacing.limits_for(account, cls)
        pacer = CallPacer(
            campaign_id=None,
            account_id=account.pk,
            limits=limits,
            deadline=clock.monotonic() + POLL_SLICE,
        )
        pacer.attach(be)
        permit = pacing.pace_acquire(account_id=account.pk, limits=limits)
        if not permit.granted:
            continue
        pacing.pace_wait(permit.wait)
        try:
            with pacer.prebooked():
                replies = be.fetch_replies()
        except ProviderError as exc:
            logger.warning("Account %s: reply poll failed: %s", account.pk, exc)
            continue
        if replies:
            stored += len(inbound_apply(account=account, messages=replies))
    return stored
