"""What a contact received and said: the last messages and replies of a number.

Read by the contact page (``contacts.admin``); both queries use the phone
indexes (``msg_phone_time``, ``inbound_phone``), so they cost the same with a
million messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.models import InboundMessage, Message

#: Rows of each kind shown on the contact page.
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class ContactHistory:
    messages: list[Message]
    replies: list[InboundMessage]


def contact_history(*, phone: str, limit: int = HISTORY_LIMIT) -> ContactHistory:
    """The newest ``limit`` messages sent to ``phone`` and replies from it."""
    messages = list(
        Message.objects.filter(phone=phone).select_related("campaign").order_by("-id")[:limit]
    )
    replies = list(
        InboundMessage.objects.filter(phone=phone)
        .select_related("campaign", "account")
        .order_by("-received_at", "-id")[:limit]
    )
    return ContactHistory(messages=messages, replies=replies)
