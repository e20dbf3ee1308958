"""Run the admin (runserver) and a django-q2 worker together; Ctrl-C stops both.

Used by ``make run``. Each child gets its own process group so one Ctrl-C
reaches both exactly once, and if either dies the other is stopped too.

Stopping is graceful and bounded: Ctrl-C, SIGTERM or SIGHUP to this process
sends the worker's group SIGINT. The cluster's main process stops the
cluster on it (django-q2 waits for each worker's task in hand); each worker
process lets its dispatch run finish the batch in hand, hand back the rest
and end (see ``campaigns.engine.run.listen_for_stop``), so no message is
left ``submitting``. SIGTERM to the whole group instead would kill the
workers mid-batch and leave the cluster's main process waiting for them.
Whatever is still running after :data:`STOP_WITHIN` seconds is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

#: Seconds from the stop request to everything stopped (then SIGKILL).
STOP_WITHIN = 9.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
    args = parser.parse_args()

    manage = [sys.executable, "manage.py"]
    children = {
        "web": subprocess.Popen(
            [*manage, "runserver", f"{args.host}:{args.port}", "--noreload"],
            start_new_session=True,
        ),
        "worker": subprocess.Popen([*manage, "qcluster"], start_new_session=True),
    }

    def stop(*_):
        for name, proc in children.items():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT if name == "worker" else signal.SIGTERM)

    def interrupt(*_):
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background sets
    # SIGINT to "ignore", and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    exit_code = 0
    try:
        while True:
            for name, proc in children.items():
                code = proc.poll()
                if code is not None:
                    print(f"smsoffice: the {name} process exited ({code}); stopping.")
                    exit_code = code or 0
                    raise SystemExit
            time.sleep(0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop()
        deadline = time.monotonic() + STOP_WITHIN
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"smsoffice: process {proc.pid} did not stop in time; killing it.")
            # The group too: a worker process must not outlive its cluster.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
