"""A throwaway smsoffice with real ``qcluster`` workers, for the engine's
end-to-end tests: its own database (a temporary SQLite file, or a fresh
PostgreSQL database) and broker (the ORM, or a Redis db), driven through
subprocesses exactly as production runs it.

The test process never touches that database through Django (pytest-django
owns its connection); it runs short scripts in subprocesses
(:meth:`WorkerSite.script`) and reads the state back as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

#: Sets up a simulator account and ``n`` draft campaigns of ``size`` recipients.
SETUP = """
from decimal import Decimal
from campaigns.models import Campaign
from contacts.models import Contact, ContactList, ListMembership
from providers.models import ProviderAccount
from providers.services import credits_top_up

account = ProviderAccount.objects.create(
    name="Worker test", backend="simulator",
    credentials={"seed": 1, "latency": LATENCY, "reply_rate": 0, "delivery_delay": 3600,
                 "initial_balance": N * SIZE * 10},
    requests_per_second=RPS, messages_per_second=MPS,
)
credits_top_up(account=account, amount=Decimal(N * SIZE * 2), note="test")
ids = []
for c in range(N):
    lst = ContactList.objects.create(name=f"L{c}")
    contacts = Contact.objects.bulk_create(
        [Contact(phone=f"+614{c:02d}{i:06d}", first_name=f"N{i}") for i in range(SIZE)]
    )
    contacts = list(Contact.objects.filter(phone__startswith=f"+614{c:02d}"))
    ListMembership.objects.bulk_create(
        [ListMembership(contact=x, contact_list=lst) for x in contacts]
    )
    campaign = Campaign.objects.create(
        name=f"C{c}", account=account, body="Hi {{ first_name }}", sender="Shop"
    )
    campaign.lists.add(lst)
    ids.append(campaign.pk)
RESULT = {"account": account.pk, "campaigns": ids}
"""

STATE = """
from django.db.models import Count
from campaigns.models import Campaign, Message
RESULT = {
    str(c.pk): {
        "status": c.status,
        "planned": c.planned,
        "recipients": c.recipients_total,
        "sent": c.sent_count,
        "reason": c.status_reason,
        "by_status": dict(
            Message.objects.filter(campaign=c).values_list("status").annotate(n=Count("id"))
        ),
    }
    for c in Campaign.objects.all()
}
"""


class WorkerSite:
    def __init__(self, tmp_path: Path, *, backend: str = "sqlite", workers: int = 1) -> None:
        self.tmp_path = tmp_path
        self.workers = workers
        self.backend = backend
        self.env = {
            k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}
        }
        if backend == "sqlite":
            self.env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'site.sqlite3'}"
        else:
            # A fresh database on the PostgreSQL server the suite uses, and
            # the Redis db of the suite (flushed: it is ours).
            base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
            self.pg_name = f"site_{uuid.uuid4().hex[:10]}"
            self.pg_admin = f"{base}/postgres"
            self._psql(f'CREATE DATABASE "{self.pg_name}"')
            self.env["DATABASE_URL"] = f"{base}/{self.pg_name}"
            self.env["REDIS_URL"] = os.environ["REDIS_URL"]
            import redis

            redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
        self.env["Q_WORKERS"] = str(workers)
        self.procs: list[subprocess.Popen] = []
        self.manage("migrate", "--no-input")
        self.manage("createcachetable")
        self.manage("sync_schedules")  # the periodic recovery sweep, as in production

    def _psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(sql)

    def manage(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def script(self, code: str, **names) -> object:
        """Run ``code`` in a Django process of the site; returns its ``RESULT``."""
        prelude = "".join(f"{k} = {v!r}\n" for k, v in names.items())
        program = (
            "import json, django\ndjango.setup()\n"
            + prelude
            + textwrap.dedent(code)
            + "\nprint('RESULT=' + json.dumps(RESULT, default=str))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=ROOT,
            env={**self.env, "DJANGO_SETTINGS_MODULE": "smsoffice.settings"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT=")][-1]
        return json.loads(line[len("RESULT=") :])

    def setup_campaigns(
        self, *, n: int, size: int, rps: float = 0, mps: float = 0, latency: float = 0
    ) -> list:
        result = self.script(SETUP, N=n, SIZE=size, RPS=rps, MPS=mps, LATENCY=latency)
        return result["campaigns"]

    def send_now(self, campaign_ids: list[int]) -> None:
        self.script(
            """
            from django.contrib.auth import get_user_model
            from campaigns.models import Campaign
            from campaigns.services import campaign_send_now
            user = get_user_model().objects.create_superuser("boss", "b@example.com", "pw")
            for pk in IDS:
                campaign_send_now(campaign=Campaign.objects.get(pk=pk), user=user)
            RESULT = None
            """,
            IDS=campaign_ids,
        )

    def state(self) -> dict:
        return self.script(STATE)

    def start_worker(self, log_name: str = "worker") -> subprocess.Popen:
        log = open(self.tmp_path / f"{log_name}-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.tmp_path.glob("*.log"))
        )

    def wait_for(self, predicate, *, timeout: float, every: float = 2.0) -> dict:
        """Poll :meth:`state` until ``predicate(state)``; returns the last state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state) or time.monotonic() > deadline:
                return state
            time.sleep(every)

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a whole worker (the cluster and its processes): no cleanup."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.backend != "sqlite":
            self._psql(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
