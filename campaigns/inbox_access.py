"""Who may see which conversations of the inbox.

House staff (superusers, holders of ``providers.view_all_accounts``, and
operators, who may see every campaign: the campaign and message pages are
not scoped by account) see every conversation. Anyone else, a reseller,
sees the conversations of the accounts it may see
(``ProviderAccount.objects.visible_to``: its own accounts and their
sub-accounts). The inbox list, the thread and every action of the thread
read conversations through :func:`conversations_for`, so a foreign
conversation is simply not found (404).
"""

from __future__ import annotations

from django.db.models import QuerySet

from campaigns.models import Conversation
from providers.models import ProviderAccount


def sees_every_account(user) -> bool:
    """Whether ``user`` sees the conversations of every account."""
    return bool(
        user.is_superuser
        or user.has_perm("providers.view_all_accounts")
        or user.has_perm("campaigns.view_campaign")
    )


def inbox_accounts(user) -> QuerySet[ProviderAccount]:
    """The accounts whose conversations ``user`` may see."""
    if sees_every_account(user):
        return ProviderAccount.objects.all()
    return ProviderAccount.objects.visible_to(user)


def conversations_for(user) -> QuerySet[Conversation]:
    """The conversations ``user`` may see (and act on, given the permission)."""
    if sees_every_account(user):
        return Conversation.objects.all()
    visible = ProviderAccount.objects.visible_to(user).values("pk")
    return Conversation.objects.filter(account_id__in=visible)
