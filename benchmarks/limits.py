"""Shared by the benchmarks: a throwaway database (SQLite file or a fresh
PostgreSQL database) and the *physical limit* of each stage's writes,
measured on the same database in the same run, so a figure is always read
next to what the hardware and the database can do at best:

- plan: the same rows written the fastest way the database has (SQLite:
  ``executemany`` INSERT; PostgreSQL: COPY, its text prepared before the
  clock starts, from as many connections at once as the plan has writers)
  into a table shaped like the messages, with the same indexes and foreign
  keys, in chunks of the planner's size, one transaction each;
- dispatch: per batch, the two writes no engine can avoid (claim: one
  UPDATE of the batch's ids; record: one UPDATE of status and provider id
  from a VALUES list), each in its own transaction, no Python logic;
- status apply: one set-based UPDATE per call's worth of ids.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

SCRATCH = "bench_limit_messages"


def production_settings() -> None:
    """Settings as production runs them, before ``django.setup()``: DEBUG off
    (a query log would cost up to half the time), not the developer's .env;
    ``settings_test`` only adds a throwaway SECRET_KEY."""
    os.environ.update(ENV_FILE="", DEBUG="False", DJANGO_SETTINGS_MODULE="smsoffice.settings_test")


def setup_database(kind: str, tmp: Path) -> callable:
    """Point Django at a fresh database of ``kind`` (``sqlite`` or
    ``postgres``); returns a function that drops it (PostgreSQL)."""
    if kind == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
        return lambda: None
    import psycopg

    base = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = f"{base}/{name}"

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return drop


def _scratch() -> list[str]:
    """(Re)create the scratch table shaped like the messages; its columns."""
    from django.db import connection

    from campaigns.models import Message

    table = Message._meta.db_table
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE TABLE {SCRATCH} (LIKE {quote(table)} INCLUDING ALL)")
            # LIKE leaves the foreign keys out; the server checks them on
            # every row it inserts (~35 % of a COPY into the messages at 1M), so
            # the limit has them too, as SQLite's copy of the DDL has.
            cursor.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
                [table],
            )
            for number, (definition,) in enumerate(cursor.fetchall()):
                cursor.execute(
                    f"ALTER TABLE {SCRATCH} ADD CONSTRAINT {SCRATCH}_fk{number} {definition}"
                )
        else:
            # The messages table's own DDL, primary key and every index
            # included (``CREATE TABLE AS`` would drop the integer primary
            # key, and an UPDATE by id would scan the table).
            cursor.execute(
                "SELECT type, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL "
                "ORDER BY type DESC",  # the table before its indexes
                [table],
            )
            for number, (kind, sql) in enumerate(cursor.fetchall()):
                sql = sql.replace(f'"{table}"', SCRATCH)
                if kind == "index":
                    # Index names are global in SQLite: give the copies their own.
                    head, _, rest = sql.partition(" ON ")
                    sql = f"{head.rsplit(' ', 1)[0]} {SCRATCH}_i{number} ON {rest}"
                cursor.execute(sql)
    return [f.column for f in Message._meta.concrete_fields]


def limit_plan(rows: list[tuple], chunk: int = 2000) -> float:
    """Seconds to write ``rows`` (full message rows, id first) the fastest way:
    SQLite, ``executemany`` in chunks of ``chunk``; PostgreSQL, COPY in
    chunks of the overlapped plan's size from as many connections at once as
    it has writers (one COPY stream is slower than what the server can take
    from two: the limit would be below the plan)."""
    from django.db import connection, transaction

    columns = _scratch()
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    if connection.vendor == "postgresql":
        return _limit_plan_copy(rows, names)
    start = time.perf_counter()
    for i in range(0, len(rows), chunk):
        with transaction.atomic(), connection.cursor() as cursor:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {SCRATCH} ({names}) VALUES ({marks})", rows[i : i + chunk]
            )
    return time.perf_counter() - start


def _limit_plan_copy(rows: list[tuple], names: str) -> float:
    import queue
    import threading

    from django.db import connection, connections, transaction

    from campaigns.engine.plan import PLAN_COPY_CHUNK, PLAN_WRITERS, _copy_text

    # COPY text prepared before the clock starts: the server's work only.
    blocks: queue.Queue[bytes | None] = queue.Queue()
    for i in range(0, len(rows), PLAN_COPY_CHUNK):
        lines = ["\t".join(map(_copy_text, row)) for row in rows[i : i + PLAN_COPY_CHUNK]]
        blocks.put(("\n".join(lines) + "\n").encode())
    errors: list[BaseException] = []

    def write() -> None:
        try:
            while (block := blocks.get()) is not None:
                sql = f"COPY {SCRATCH} ({names}) FROM STDIN"
                with (
                    transaction.atomic(),
                    connection.cursor() as cursor,
                    cursor.cursor.copy(sql) as copy,
                ):
                    copy.write(block)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=write) for _ in range(PLAN_WRITERS)]
    for _ in writers:
        blocks.put(None)
    start = time.perf_counter()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    # Statistics, as the messages have them once planned (the engine analyzes
    # after a large plan) and as autovacuum keeps them: without them the
    # planner may scan the whole table for each id lookup below.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {SCRATCH}")
    return seconds


def _ids_in(ids: list[int]) -> tuple[str, list]:
    """``id IN (...)`` the fastest way: one array parameter on PostgreSQL
    (see smsoffice.lookups), the list elsewhere."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return "id = ANY(CAST(%s AS bigint[]))", [list(ids)]
    return f"id IN ({', '.join(['%s'] * len(ids))})", list(ids)


def limit_dispatch(ids: list[int], batch: int) -> float:
    """Seconds for the claim and record UPDATEs of ``ids`` in batches."""
    from django.db import connection, transaction

    from campaigns.engine.batch import id_ref_source

    start = time.perf_counter()
    for i in range(0, len(ids), batch):
        part = ids[i : i + batch]
        where, params = _ids_in(part)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SCRATCH} SET status = 'submitting', claim_token = %s "
                f"WHERE {where} AND status = 'queued'",
                [uuid.uuid4().hex, *params],
            )
        # As the engine records them (two arrays on PostgreSQL: one index
        # lookup per id; a VALUES list is hash-joined against a table scan).
        source, params, match, ref = id_ref_source(part, [f"p{pk}" for pk in part])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SCRATCH} SET status = 'sent', claim_token = NULL, provider_ref = {ref} "
                f"FROM {source} WHERE {SCRATCH}.id = {match}",
                params,
            )
    return time.perf_counter() - start


def limit_status_apply(ids: list[int], per_call: int) -> float:
    """Seconds for one set-based UPDATE per ``per_call`` ids."""
    from django.db import connection, transaction

    start = time.perf_counter()
    for i in range(0, len(ids), per_call):
        part = ids[i : i + per_call]
        where, params = _ids_in(part)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SCRATCH} SET status = 'delivered', raw_status = 'DELIVERED' "
                f"WHERE {where} AND status = 'sent'",
                params,
            )
    return time.perf_counter() - start


def scratch_rows_like(campaign_id: int, limit: int | None = None) -> list[tuple]:
    """The campaign's message rows as the database stores them (id first),
    to write again into the scratch table."""
    from django.db import connection

    from campaigns.models import Message

    columns = [f.column for f in Message._meta.concrete_fields]
    quote = connection.ops.quote_name
    sql = (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM "
        f"{quote(Message._meta.db_table)} WHERE campaign_id = %s ORDER BY id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [campaign_id])
        rows = cursor.fetchall()
    status = columns.index("status")
    # Fresh rows: queued, as planning writes them.
    return [(*r[:status], "queued", *r[status + 1 :]) for r in rows[:limit]]
