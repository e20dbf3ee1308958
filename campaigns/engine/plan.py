"""Planning: one ``Message`` per recipient, then counters and the credit
reservation set to what was planned.

Recipients come from :func:`campaigns.quote.campaign_recipients` and are
bulk-inserted in chunks of :data:`PLAN_CHUNK` (``ON CONFLICT DO NOTHING`` on
the unique (campaign, phone): re-planning after a crash adds only what is
missing).
"""

from __future__ import annotations

import contextlib
import pickle
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal

from django.db import connection, transaction

from campaigns import quiet_hours
from campaigns.counters import counters_move, counters_recount
from campaigns.engine import clock
from campaigns.engine.common import C, S, credit_move, credits_of, event
from campaigns.engine.lease import lease_renew
from campaigns.engine.transitions import campaign_pause_locked
from campaigns.models import Campaign, Message
from providers.services import CreditError

#: Recipients inserted per transaction while planning.
PLAN_CHUNK = 2000
#: A plan's spool stays in memory up to this size (bytes), then goes to a file.
SPOOL_IN_MEMORY = 8 * 1024 * 1024


def campaign_plan(*, campaign_id: int, lease: uuid.UUID | None = None) -> bool:
    """Materialise one ``Message`` per recipient, then reconcile counters and
    the reservation with the plan. Returns True once the campaign is planned.

    Two phases, so that no read cursor is ever open across a write: SQLite
    refuses at once ("database is locked", no busy wait) to let a connection
    that holds a read snapshot write after another connection committed.
    First the recipient stream is read to the end into a spool (chunks of
    :data:`PLAN_CHUNK` pickled to a temporary file: memory stays flat), then
    each chunk is inserted in its own transaction. Safe to run again after a
    crash (the unique (campaign, phone) ignores what is there). With
    ``lease``, the lease is renewed per chunk and planning stops (False) if
    it was lost.
    """
    campaign = Campaign.objects.select_related("account", "template").get(pk=campaign_id)
    if campaign.planned:
        return True
    zones: set[str] = set()
    written = 0
    with _spool_recipients(campaign, zones) as chunks:
        insert = plan_inserter(campaign_id)
        for chunk in chunks:
            insert(chunk)
            written += len(chunk)
            if lease is not None and not lease_renew(campaign_id, lease):
                return False
            if Campaign.objects.filter(pk=campaign_id, status=C.CANCELLED).exists():
                break
    planned = _plan_finalize(campaign_id, zones)
    statistics_refresh(written)
    return planned


#: Planned rows from which PostgreSQL's statistics of the messages are
#: refreshed at once (when they are also a tenth of the table or more).
ANALYZE_AFTER = 20_000


def statistics_refresh(written: int) -> None:
    """PostgreSQL: ``ANALYZE`` the messages after a plan that added
    :data:`ANALYZE_AFTER` rows or more and at least a tenth of the table, as
    its documentation advises after a bulk load. Autovacuum would do it
    within a minute or so; until then the planner reads statistics that do
    not know the new campaign and may pick a sequential scan for the batch
    lookups of the dispatch that starts now. Samples at most 30,000 rows:
    ~0.1-0.3 s whatever the size. No-op elsewhere."""
    if connection.vendor != "postgresql" or written < ANALYZE_AFTER:
        return
    table = Message._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
        if row is None or written >= 0.1 * max(0.0, float(row[0])):
            cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")


@contextlib.contextmanager
def _spool_recipients(campaign: Campaign, zones: set[str]) -> Iterator[Iterator[list[tuple]]]:
    """Read every recipient of ``campaign`` (rows as :class:`_PlanInsert`
    takes them) into a temporary spool, adding their time zones to
    ``zones``; yields an iterator over the spooled chunks. The recipient
    query is finished (its cursor closed) before the first chunk is yielded.
    """
    from campaigns.quote import campaign_recipients

    account = campaign.account
    quiet = quiet_hours.has_window(account)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        chunk: list[tuple] = []
        for recipient in campaign_recipients(campaign=campaign):
            tz = ""
            if quiet:
                tz = quiet_hours.recipient_time_zone(recipient.phone, default=account.time_zone)
                zones.add(tz)
            chunk.append(
                (
                    recipient.contact_id,
                    recipient.phone,
                    recipient.body,
                    recipient.encoding,
                    recipient.segments,
                    recipient.credits,
                    tz,
                )
            )
            if len(chunk) >= PLAN_CHUNK:
                pickle.dump(chunk, spool, protocol=pickle.HIGHEST_PROTOCOL)
                chunk = []
        if chunk:
            pickle.dump(chunk, spool, protocol=pickle.HIGHEST_PROTOCOL)
        spool.seek(0)

        def chunks() -> Iterator[list[tuple]]:
            while True:
                try:
                    yield pickle.load(spool)
                except EOFError:
                    return

        yield chunks()


class _PlanInsert:
    """``INSERT ... ON CONFLICT DO NOTHING`` of planned messages with
    ``executemany`` (PostgreSQL and SQLite >= 3.24 both have it).

    ``bulk_create`` spends most of its time preparing 22 values per row in
    Python; here each row carries only what differs between recipients and
    every other column gets its model default, prepared once. The unique
    (campaign, phone) makes a re-run after a crash insert only what is
    missing.
    """

    VARIABLE = ("contact", "phone", "body", "encoding", "segments", "credits", "time_zone")

    def __init__(self, campaign_id: int) -> None:
        self.campaign_id = campaign_id
        fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
        by_name = {f.name: f for f in fields}
        self.variable = [by_name[name] for name in self.VARIABLE]
        self.fixed = [f for f in fields if f.name not in self.VARIABLE]
        columns = [f.column for f in self.fixed + self.variable]
        quote = connection.ops.quote_name
        self.sql = (
            f"INSERT INTO {quote(Message._meta.db_table)} "
            f"({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING"
        )

    def _fixed_values(self) -> tuple:
        now = clock.now()
        values = []
        for field in self.fixed:
            if field.name == "campaign":
                value = self.campaign_id
            elif field.name == "created_at":
                value = now
            else:
                value = field.get_default()
            values.append(field.get_db_prep_save(value, connection))
        return tuple(values)

    def __call__(self, rows: list[tuple]) -> None:
        if not rows:
            return
        fixed = self._fixed_values()
        credits = self.variable[self.VARIABLE.index("credits")]
        adapt = connection.ops.adapt_decimalfield_value
        params = [
            (
                *fixed,
                contact_id,
                phone,
                body,
                encoding,
                segments,
                adapt(amount, credits.max_digits, credits.decimal_places),
                tz,
            )
            for contact_id, phone, body, encoding, segments, amount, tz in rows
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(self.sql, params)


class _PlanCopy(_PlanInsert):
    """PostgreSQL: ``COPY`` the chunk into a temporary table, then one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into the messages.

    ``executemany`` is one round trip and one index probe per row; COPY
    streams the rows in one go and the set-based insert lets PostgreSQL
    check the unique (campaign, phone) in bulk, at several times the rate.
    The temporary table lives for the session (created once per
    connection) and empties itself at each commit.
    """

    TEMP = "smsoffice_plan_rows"

    def __init__(self, campaign_id: int) -> None:
        super().__init__(campaign_id)
        quote = connection.ops.quote_name
        variable = [f.column for f in self.variable]
        types = [f.db_type(connection) for f in self.variable]
        self.create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.TEMP} ("
            + ", ".join(f"{quote(c)} {t}" for c, t in zip(variable, types, strict=True))
            + ") ON COMMIT DELETE ROWS"
        )
        self.copy = f"COPY {self.TEMP} ({', '.join(quote(c) for c in variable)}) FROM STDIN"
        # Every other column gets the same value on every row: typed
        # parameters in the SELECT list (PostgreSQL would take an untyped
        # one for text).
        fixed = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in self.fixed)
        columns = [f.column for f in self.fixed] + variable
        self.sql = (
            f"INSERT INTO {quote(Message._meta.db_table)} "
            f"({', '.join(quote(c) for c in columns)}) "
            f"SELECT {fixed}, {', '.join(quote(c) for c in variable)} FROM {self.TEMP} "
            "ON CONFLICT DO NOTHING"
        )

    def __call__(self, rows: list[tuple]) -> None:
        if not rows:
            return
        fixed = self._fixed_values()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(self.create)
            # Empty even inside an outer transaction (where ON COMMIT has not
            # come yet): another chunk's rows must never join this insert.
            cursor.execute(f"TRUNCATE {self.TEMP}")
            with cursor.cursor.copy(self.copy) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(self.sql, fixed)


def plan_inserter(campaign_id: int) -> _PlanInsert:
    """The fastest way this database has to insert planned messages."""
    if connection.vendor == "postgresql":
        return _PlanCopy(campaign_id)
    return _PlanInsert(campaign_id)


def _plan_finalize(campaign_id: int, zones: set[str]) -> bool:
    now = clock.now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=campaign_id)
        )
        if campaign.planned:
            return True
        counts = counters_recount(campaign_id=campaign_id)
        if campaign.status == C.CANCELLED:
            # Cancelled while planning: the cancel released the whole
            # reservation, so what was planned meanwhile is cancelled as is.
            n = Message.objects.filter(campaign_id=campaign_id, status=S.QUEUED).update(
                status=S.CANCELLED, status_reason="Campaign cancelled.", status_at=now
            )
            counters_move(campaign_id=campaign_id, moves={(S.QUEUED, S.CANCELLED): n})
            detail = f"{counts['recipients_total']} recipients planned after the cancel."
        else:
            needed = credits_of(Message.objects.filter(campaign_id=campaign_id, status=S.QUEUED))
            shortfall = reservation_reconcile(campaign=campaign, target=needed)
            detail = (
                f"{counts['recipients_total']} recipients planned, {needed} credits "
                f"(quoted {campaign.credits_reserved})."
            )
            if shortfall:
                campaign_pause_locked(campaign, reason=shortfall)
        Campaign.objects.filter(pk=campaign_id).update(planned=True, time_zones=sorted(zones))
        event(campaign_id, "plan", detail=detail)
    return True


def reservation_reconcile(*, campaign: Campaign, target: Decimal, user=None) -> str:
    """Make the campaign's reservation ``target`` credits (release the excess
    or reserve the difference). Call with the campaign row locked. Returns ""
    or, when the account cannot cover the difference, the reason (nothing
    changed)."""
    held = campaign.credits_reserved
    if target < held:
        credit_move("release", campaign=campaign, amount=held - target, key=None)
    elif target > held:
        try:
            with transaction.atomic():
                credit_move("reserve", campaign=campaign, amount=target - held, key=None, user=user)
        except CreditError as exc:
            return (
                f"Not enough credits: the campaign now needs {target} credits, "
                f"{target - held} more than reserved. {' '.join(exc.messages)} "
                "Top up, then resume."
            )
    Campaign.objects.filter(pk=campaign.pk).update(credits_reserved=target)
    campaign.credits_reserved = target
    return ""
