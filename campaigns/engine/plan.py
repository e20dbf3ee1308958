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
import queue
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from campaigns import quiet_hours
from campaigns.counters import counters_move, counters_recount
from campaigns.engine import clock
from campaigns.engine.common import C, S, credit_move, credits_of, event
from campaigns.engine.lease import Heartbeat
from campaigns.engine.transitions import campaign_pause_locked
from campaigns.models import Campaign, Message
from providers.services import CreditError

#: Recipients inserted per transaction while planning.
PLAN_CHUNK = 2000
#: A plan's spool stays in memory up to this size (bytes), then goes to a file.
SPOOL_IN_MEMORY = 8 * 1024 * 1024


def campaign_plan(*, campaign_id: int, lease: Heartbeat | None = None) -> bool:
    """Materialise one ``Message`` per recipient, then reconcile counters and
    the reservation with the plan. Returns True once the campaign is planned.

    Safe to run again after a crash (the unique (campaign, phone) ignores
    what is there). With ``lease`` (the run's :class:`Heartbeat`), the
    lease is kept per chunk (:meth:`Heartbeat.keep`) and planning stops
    (False) if it was lost. Each chunk of
    :data:`PLAN_CHUNK` is inserted in its own transaction; a cancel seen
    between chunks stops the inserts (the finalisation cancels what was
    planned).

    - SQLite: two phases, so that no read cursor is ever open across a
      write (SQLite refuses at once, "database is locked" with no busy wait,
      to let a connection holding a read snapshot write after another
      connection committed). The recipient stream is read to the end into a
      spool (pickled chunks in a temporary file: memory stays flat), then
      the chunks are inserted.
    - PostgreSQL, outside a transaction: overlapped. Writer threads, each on
      its own connection, insert chunks of :data:`PLAN_COPY_CHUNK` while
      this thread renders the next ones (:class:`_PlanWriters`); rendering
      is Python, inserting is mostly the server's work on other cores, so
      the plan takes about the longer of the two instead of their sum.
      Inside an outer transaction (the test suite), another connection could
      not see the campaign: two phases.
    """
    campaign = Campaign.objects.select_related("account", "template").get(pk=campaign_id)
    if campaign.planned:
        return True
    zones: set[str] = set()
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        written, kept = _plan_overlapped(campaign, zones, lease)
    else:
        written, kept = _plan_two_phases(campaign, zones, lease)
    if not kept:
        return False
    planned = _plan_finalize(campaign_id, zones)
    statistics_refresh(written)
    return planned


def _chunk_done(campaign_id: int, lease: Heartbeat | None) -> str:
    """After each inserted chunk: "" to go on, "lease" when the lease was
    lost, "cancelled" when the campaign was cancelled meanwhile."""
    if lease is not None and not lease.keep():
        return "lease"
    if Campaign.objects.filter(pk=campaign_id, status=C.CANCELLED).exists():
        return "cancelled"
    return ""


def _plan_two_phases(
    campaign: Campaign, zones: set[str], lease: Heartbeat | None
) -> tuple[int, bool]:
    """Spool every recipient, then insert; (rows written, lease kept)."""
    written = 0
    with _spool_recipients(campaign, zones) as chunks:
        insert = plan_inserter(campaign.pk)
        for chunk in chunks:
            insert(chunk)
            written += len(chunk)
            stop = _chunk_done(campaign.pk, lease)
            if stop == "lease":
                return written, False
            if stop:
                break
    return written, True


#: PostgreSQL: rows per COPY (and per transaction) of the overlapped plan.
#: Larger than :data:`PLAN_CHUNK`: a commit and a savepoint per 10,000 rows
#: instead of per 2,000 (-12 % of the writers' time at 1M), and each COPY
#: still takes ~0.1 s.
PLAN_COPY_CHUNK = 10_000
#: PostgreSQL: threads COPYing chunks side by side, each on its own
#: connection. One was the bottleneck: the server checks both foreign keys of
#: every row it inserts (~35 % of a COPY into the messages at 1M), on one core,
#: while the renderer waited for room in the queue.
PLAN_WRITERS = 2
#: Rendered chunks waiting for a writer (bounds memory: 4 chunks).
PLAN_QUEUE = 4


class _PlanWriters:
    """PostgreSQL: :data:`PLAN_WRITERS` threads insert the chunks :meth:`put`
    here (row count and COPY block, :func:`copy_block`), each on its own
    database connection, which it closes. Chunks are disjoint recipients, so
    the writers never wait on each other's rows. On a lost lease, a cancel or
    an error they set :attr:`stopped`, drop what else comes and keep the
    reason (:attr:`lease_lost`, :attr:`error`) for the planning thread."""

    def __init__(self, campaign_id: int, lease: Heartbeat | None, count: int) -> None:
        self.campaign_id = campaign_id
        self.lease = lease
        self.chunks: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=PLAN_QUEUE)
        self.stopped = threading.Event()
        self.written = 0
        self.lease_lost = False
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, name=f"plan-writer-{campaign_id}-{i}", daemon=True)
            for i in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        from django.db import connections

        try:
            insert = _PlanCopy(self.campaign_id)
            while (item := self.chunks.get()) is not None:
                if self.stopped.is_set():
                    continue  # drain until the end marker
                count, block = item
                insert.insert_block(block)
                with self._lock:
                    self.written += count
                stop = _chunk_done(self.campaign_id, self.lease)
                if stop:
                    with self._lock:
                        self.lease_lost = self.lease_lost or stop == "lease"
                    self.stopped.set()
        except BaseException as exc:  # handed to the planning thread, which raises it
            with self._lock:
                self.error = self.error or exc
            self.stopped.set()
        finally:
            connections.close_all()

    def _alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def put(self, item: tuple[int, bytes] | None) -> bool:
        """Queue ``item`` (waiting for room); False once the writers have
        stopped or died (nothing more is worth rendering)."""
        while True:
            if item is not None and self.stopped.is_set():
                return False
            if not self._alive():
                return False
            try:
                self.chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue

    def finish(self) -> None:
        """One end marker per writer, then wait for them all."""
        for _ in self._threads:
            self.put(None)
        for thread in self._threads:
            thread.join()


def _plan_overlapped(
    campaign: Campaign, zones: set[str], lease: Heartbeat | None
) -> tuple[int, bool]:
    """Render chunks here while :class:`_PlanWriters` insert them;
    (rows written, lease kept). Re-raises a writer's error."""
    writers = _PlanWriters(campaign.pk, lease, PLAN_WRITERS)
    formatter = _PlanCopy(campaign.pk)
    writers.start()
    try:
        for chunk in _recipient_chunks(campaign, zones, PLAN_COPY_CHUNK):
            if not writers.put((len(chunk), formatter.block(chunk))):
                break
    finally:
        writers.finish()
    if writers.error is not None:
        raise writers.error
    return writers.written, not writers.lease_lost


def _recipient_chunks(
    campaign: Campaign, zones: set[str], size: int | None = None
) -> Iterator[list[tuple]]:
    """The recipients of ``campaign`` in chunks of ``size`` (default
    :data:`PLAN_CHUNK`) rows as
    :class:`_PlanInsert` takes them, adding their time zones to ``zones``."""
    from campaigns.quote import campaign_recipients

    size = size or PLAN_CHUNK
    account = campaign.account
    quiet = quiet_hours.has_window(account)
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
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextlib.contextmanager
def _spool_recipients(campaign: Campaign, zones: set[str]) -> Iterator[Iterator[list[tuple]]]:
    """Read every recipient of ``campaign`` (:func:`_recipient_chunks`) into a
    temporary spool; yields an iterator over the spooled chunks. The
    recipient query is finished (its cursor closed) before the first chunk
    is yielded."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        for chunk in _recipient_chunks(campaign, zones):
            pickle.dump(chunk, spool, protocol=pickle.HIGHEST_PROTOCOL)
        spool.seek(0)

        def chunks() -> Iterator[list[tuple]]:
            while True:
                try:
                    yield pickle.load(spool)
                except EOFError:
                    return

        yield chunks()


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
    """PostgreSQL: ``COPY`` the chunk (every column but the id, in COPY's
    text format: :meth:`block`) straight into the messages, in a savepoint.

    COPY is the fastest way PostgreSQL has to write rows, but has no
    ``ON CONFLICT``: when the chunk meets a message already there (a re-run
    after a crash), the savepoint is rolled back and the same block goes
    through a temporary table and one ``INSERT ... SELECT ... ON CONFLICT
    DO NOTHING``, which inserts only what is missing. The temporary table
    lives for the session (created once per connection) and empties itself
    at each commit.
    """

    TEMP = "smsoffice_plan_rows"

    def __init__(self, campaign_id: int) -> None:
        super().__init__(campaign_id)
        quote = connection.ops.quote_name
        table = quote(Message._meta.db_table)
        names = ", ".join(quote(f.column) for f in self.variable + self.fixed)
        self.copy_direct = f"COPY {table} ({names}) FROM STDIN"
        self.create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.TEMP} ON COMMIT DELETE ROWS "
            f"AS SELECT {names} FROM {table} WITH NO DATA"
        )
        self.copy_temp = f"COPY {self.TEMP} ({names}) FROM STDIN"
        self.sql = (
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {self.TEMP} ON CONFLICT DO NOTHING"
        )

    def __call__(self, rows: list[tuple]) -> None:
        if rows:
            self.insert_block(self.block(rows))

    def block(self, rows: list[tuple]) -> bytes:
        """``rows`` with the fixed columns, ready for :meth:`insert_block`."""
        fixed = "\t" + "\t".join(_copy_text(v) for v in self._fixed_values())
        return copy_block(rows, suffix=fixed)

    def insert_block(self, block: bytes) -> None:
        """Insert the rows of ``block`` (:meth:`block`) that are not there yet."""
        from psycopg.errors import UniqueViolation  # PostgreSQL only: not imported on SQLite

        with transaction.atomic(), connection.cursor() as cursor:
            try:
                with transaction.atomic(), cursor.cursor.copy(self.copy_direct) as copy:
                    copy.write(block)
                return
            except UniqueViolation:
                pass  # some are there already: insert what is missing
            cursor.execute(self.create)
            # Empty even inside an outer transaction (where ON COMMIT has not
            # come yet): another chunk's rows must never join this insert.
            cursor.execute(f"TRUNCATE {self.TEMP}")
            with cursor.cursor.copy(self.copy_temp) as copy:
                copy.write(block)
            cursor.execute(self.sql)


#: COPY's text format: what a value may not contain as is.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value) -> str:
    """One database-prepared value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


def _escaped(text: str) -> str:
    """``text`` in COPY's text format; as is when it needs nothing (most do:
    the test is four C-level scans, a translate builds a new string)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def copy_block(rows: list[tuple], *, suffix: str = "") -> bytes:
    """``rows`` (as :class:`_PlanInsert` takes them) in COPY's text format,
    each line ending with ``suffix`` (the fixed columns, already in that
    format): tab-separated, ``\\N`` for NULL, backslash, tab, newline and
    carriage return escaped. Built by the thread that renders, so the
    writer threads only send bytes (``write_row`` per row in the writer
    fought the rendering thread for the GIL and doubled the insert time).
    One f-string per row: 4x faster than joining a tuple of converted
    values, and this thread is what the overlapped plan waits for."""
    null = "\\N"
    end = suffix + "\n"
    return "".join(
        [
            f"{null if contact_id is None else contact_id}\t{_escaped(phone)}\t"
            f"{_escaped(body)}\t{_escaped(encoding)}\t{segments}\t{credits}\t"
            f"{_escaped(tz)}{end}"
            for contact_id, phone, body, encoding, segments, credits, tz in rows
        ]
    ).encode()


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
