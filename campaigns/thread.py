"""What a conversation's thread shows: reads only, no state change.

A thread interleaves, by time, three kinds of item about one number on one
account:

* outbound messages (``Message`` rows to the number through the account,
  any campaign or kind), with the campaign and the status in words;
* inbound replies (``InboundMessage``), with what a keyword did ("STOP —
  opted out"), read from the opt-out history entry the reply made;
* opt-out history entries (``OptOutEvent``) not made by a reply of this
  thread: staff entries (from this thread or elsewhere), imports, provider
  reports, keywords on other accounts. An opt-out belongs to the number, so
  they all matter here.

A thread is bounded: :func:`thread_page` returns the newest ``limit``
items before a position (keyset, never OFFSET), so a number with ten
thousand messages costs the same as one with ten. Each source is read
through its phone index, newest first, at most ``limit + 1`` rows.

A position (:class:`Cursor`) is (time, kind, id); as text
``<microseconds since 1970>.<kind rank>.<id>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet

from campaigns.models import Campaign, Conversation, InboundMessage, Message
from contacts.models import OptOut, OptOutEvent

#: Items on a thread page (and in each "load older" step).
THREAD_LIMIT = 50
#: Most items the live part returns after its start (a burst beyond this
#: shows the newest ones and says so).
LIVE_LIMIT = 500

OUT, IN, EVENT = "out", "in", "event"
#: Tie-break of items with the same time: what we sent, what came back, history.
RANK = {OUT: 0, IN: 1, EVENT: 2}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

S = Message.Status

#: A message's status in words: what it means for the person reading.
STATUS_WORDS = {
    S.QUEUED: "Waiting to be sent",
    S.SUBMITTING: "Being handed to the provider",
    S.SENT: "Sent, awaiting the delivery receipt",
    S.DELIVERED: "Delivered",
    S.UNDELIVERED: "Not delivered",
    S.EXPIRED: "Expired before delivery",
    S.REJECTED: "Rejected by the provider",
    S.FAILED: "Failed",
    S.SKIPPED: "Not sent: the number had opted out",
    S.CANCELLED: "Not sent: cancelled",
    S.UNKNOWN: "Unknown: the provider may have it (a person decides)",
}
#: Tone of a status (CSS class suffix).
STATUS_TONE = {
    S.DELIVERED: "ok",
    S.UNDELIVERED: "bad",
    S.EXPIRED: "bad",
    S.REJECTED: "bad",
    S.FAILED: "bad",
    S.UNKNOWN: "warn",
    S.SKIPPED: "muted",
    S.CANCELLED: "muted",
}

KEYWORD_WORDS = {"opt_out": "STOP", "opt_in": "START"}
Outcome = OptOutEvent.Outcome
#: What a keyword reply did, from the outcome of the history entry it made.
KEYWORD_OUTCOME = {
    ("opt_out", Outcome.OPTED_OUT): "opted out",
    ("opt_out", Outcome.ALREADY): "already opted out",
    ("opt_in", Outcome.LIFTED): "opted back in",
    ("opt_in", Outcome.KEPT): "opt-out kept",
    ("opt_in", Outcome.NOT_OPTED_OUT): "was not opted out",
}


def keyword_in_words(action: str, outcome: str = "", why: str = "") -> str:
    """``"STOP — opted out"``; without an outcome, what the keyword asks."""
    if not action:
        return ""
    word = KEYWORD_WORDS.get(action, action)
    done = KEYWORD_OUTCOME.get((action, outcome))
    if done is None:
        done = "asked to opt out" if action == "opt_out" else "asked to opt back in"
    text = f"{word} — {done}"
    if outcome == Outcome.KEPT and why:
        text += f" ({why})"
    return text


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in a thread: items strictly before it are older."""

    at: datetime
    rank: int
    id: int

    def __str__(self) -> str:
        delta = self.at - EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}.{self.rank}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor written by ``str``; ``ValueError`` for anything else."""
        parts = (text or "").split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{text!r} is not a position in a thread.")
        micros, rank, pk = (int(p) for p in parts)
        if rank not in RANK.values() or micros > 10**17:
            raise ValueError(f"{text!r} is not a position in a thread.")
        return cls(EPOCH + timedelta(microseconds=micros), rank, pk)


@dataclass
class Item:
    kind: str  # OUT, IN or EVENT
    at: datetime
    id: int
    obj: Message | InboundMessage | OptOutEvent
    status_words: str = ""
    tone: str = ""
    keyword: str = ""  # an inbound keyword in words
    #: An opt-out history entry made elsewhere, shown to someone who may not
    #: see that account: what happened and when, not who or why.
    detail_hidden: bool = False

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.at, RANK[self.kind], self.id)

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.id}"


@dataclass
class Thread:
    items: list[Item]  # oldest first
    older: Cursor | None  # where the previous page ends (None: nothing older)
    truncated: bool = False  # the live part had more than LIVE_LIMIT new items

    @property
    def start(self) -> Cursor | None:
        """The oldest item's position (the live part refreshes from here)."""
        return self.items[0].cursor if self.items else None


def _before(cursor: Cursor | None, time_field: str, rank: int) -> Q:
    """Rows of one kind strictly before ``cursor`` in (time, rank, id) order."""
    if cursor is None:
        return Q()
    if rank < cursor.rank:
        return Q(**{f"{time_field}__lte": cursor.at})
    if rank > cursor.rank:
        return Q(**{f"{time_field}__lt": cursor.at})
    return Q(**{f"{time_field}__lt": cursor.at}) | Q(**{time_field: cursor.at, "id__lt": cursor.id})


def _since(cursor: Cursor | None, time_field: str, rank: int) -> Q:
    """Rows of one kind at or after ``cursor``."""
    if cursor is None:
        return Q()
    return ~_before(cursor, time_field, rank)


def outbound_messages(conversation: Conversation) -> QuerySet[Message]:
    """Every message to the conversation's number through its account."""
    return Message.objects.filter(
        phone=conversation.phone, campaign__account_id=conversation.account_id
    )


def _sources(conversation: Conversation):
    """(kind, queryset, time field) of each source of a thread."""
    messages = outbound_messages(conversation).select_related("campaign", "campaign__created_by")
    replies = InboundMessage.objects.filter(
        phone=conversation.phone, account_id=conversation.account_id
    ).select_related("campaign")
    events = OptOutEvent.objects.filter(phone=conversation.phone).select_related("created_by")
    return [
        (OUT, messages, "created_at"),
        (IN, replies, "received_at"),
        (EVENT, events, "created_at"),
    ]


def _item(kind: str, obj, at: datetime) -> Item:
    item = Item(kind=kind, at=at, id=obj.pk, obj=obj)
    if kind == OUT:
        item.status_words = STATUS_WORDS.get(obj.status, obj.status)
        item.tone = STATUS_TONE.get(obj.status, "")
    return item


def _fetch(conversation: Conversation, where, limit: int) -> list[Item]:
    """The newest ``limit`` items of each source matching ``where(field, rank)``,
    merged newest first."""
    items: list[Item] = []
    for kind, queryset, field in _sources(conversation):
        rows = queryset.filter(where(field, RANK[kind])).order_by(f"-{field}", "-id")[:limit]
        items.extend(_item(kind, row, getattr(row, field)) for row in rows)
    items.sort(key=lambda i: i.cursor, reverse=True)
    return items


def _attach_keyword_outcomes(conversation: Conversation, items: list[Item]) -> list[Item]:
    """Say what each keyword reply did, and drop the history entries those
    replies made (the reply says it already)."""
    keyword_ids = [i.id for i in items if i.kind == IN and i.obj.action]
    if not keyword_ids:
        return items
    references = {f"inbound:{pk}": pk for pk in keyword_ids}
    outcomes = {
        references[e.source_reference]: e
        for e in OptOutEvent.objects.filter(
            phone=conversation.phone, source_reference__in=list(references)
        )
    }
    shown = {e.pk for e in outcomes.values()}
    kept = []
    for item in items:
        if item.kind == EVENT and item.id in shown:
            continue
        if item.kind == IN and item.obj.action:
            event = outcomes.get(item.id)
            item.keyword = keyword_in_words(
                item.obj.action,
                event.outcome if event else "",
                event.reason if event else "",
            )
        kept.append(item)
    return kept


def thread_page(
    conversation: Conversation, *, before: Cursor | None = None, limit: int = THREAD_LIMIT
) -> Thread:
    """The newest ``limit`` items before ``before`` (default: the newest of
    all), oldest first, and where the page before them ends."""
    items = _fetch(conversation, lambda f, r: _before(before, f, r), limit + 1)
    older = None
    if len(items) > limit:
        items = items[:limit]
        older = items[-1].cursor
    items.reverse()
    return Thread(items=_attach_keyword_outcomes(conversation, items), older=older)


def thread_since(conversation: Conversation, *, start: Cursor | None) -> Thread:
    """Everything at or after ``start`` (the live part of an open thread);
    ``start`` None: the first page. At most :data:`LIVE_LIMIT` items (the
    newest; ``truncated`` says when more arrived)."""
    if start is None:
        return thread_page(conversation)
    items = _fetch(conversation, lambda f, r: _since(start, f, r), LIVE_LIMIT + 1)
    truncated = len(items) > LIVE_LIMIT
    items = items[:LIVE_LIMIT]
    items.reverse()
    return Thread(
        items=_attach_keyword_outcomes(conversation, items),
        older=None,
        truncated=truncated,
    )


def pending_replies(conversation: Conversation) -> list[Campaign]:
    """Replies sent from the thread whose message the engine has not made
    yet (scheduled, not planned): shown as "waiting" so a reply never seems
    lost between the click and the first dispatch."""
    # Not filtered by account in SQL: the status index finds the few open
    # campaigns at once, the account index would read every reply ever sent.
    waiting = (
        Campaign.objects.filter(
            status__in=(Campaign.Status.SCHEDULED, Campaign.Status.SENDING),
            kind=Campaign.Kind.REPLY,
            planned=False,
            extra_numbers=conversation.phone,
        )
        .select_related("created_by")
        .order_by("id")
    )
    return [c for c in waiting if c.account_id == conversation.account_id]


@dataclass
class OptOutState:
    opted_out: bool
    optout: OptOut | None
    #: Recorded outside the viewer's accounts: say since when, not why.
    detail_hidden: bool = False

    @property
    def words(self) -> str:
        o = self.optout
        if o is None:
            return "Not opted out: messages can be sent."
        if self.detail_hidden:
            return (
                f"Opted out since {_when(o.created_at)} (recorded outside your accounts). "
                "Nothing can be sent to this number."
            )
        how = o.get_source_display().lower()
        text = f"Opted out since {_when(o.created_at)} ({how}"
        if o.reason:
            text += f": {o.reason}"
        return text + "). Nothing can be sent to this number."


def optout_state(phone: str) -> OptOutState:
    optout = OptOut.objects.filter(phone=phone).first()
    return OptOutState(opted_out=optout is not None, optout=optout)


def _when(value: datetime) -> str:
    from campaigns.campaign_page import format_when

    return format_when(value)


def _own(account_id: int | None, created_by_id: int | None, account_ids, user_id) -> bool:
    return account_id in account_ids if account_id else created_by_id == user_id


def hide_foreign_details(
    state: OptOutState, items: list[Item], *, account_ids: set[int], user_id: int
) -> None:
    """Mark the opt-out and the history entries whose reason and author
    ``user_id`` may not read: made on an account outside ``account_ids``, or
    by staff (no account) other than the user. An opt-out belongs to the
    number, so it is shown, with its time; its reason may name another client."""
    o = state.optout
    if o is not None:
        state.detail_hidden = not _own(o.source_account_id, o.created_by_id, account_ids, user_id)
    for item in items:
        if item.kind == EVENT:
            event = item.obj
            item.detail_hidden = not _own(
                event.account_id, event.created_by_id, account_ids, user_id
            )
