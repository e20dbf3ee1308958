"""Run the admin (runserver) and a django-q2 worker together; Ctrl-C stops both.

Used by ``make run``. Each child gets its own process group so one Ctrl-C
reaches both exactly once, and if either dies the other is stopped too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


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
        for proc in children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)

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
        deadline = time.monotonic() + 10
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
