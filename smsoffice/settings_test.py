"""Settings for the test suite and benchmarks: production settings, a test-only key.

The production settings refuse to start without a real SECRET_KEY when DEBUG
is off (as the suite runs); this key exists only here and in test processes.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-key-never-used-outside-the-test-suite-0123456789")
os.environ.setdefault("CREDENTIALS_KEYS", "dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0wMTIzNDU=")


def _redis_url_of_this_worker(url: str, worker: str) -> str:
    """Under pytest-xdist (``make test -n 2``) worker gwN uses Redis db base+N.

    The tests empty the cache (FLUSHDB) before each test: two workers on one
    db would wipe each other's rate-limiter and token state mid-test.
    pytest-django gives each worker its own test database the same way.
    """
    if not url or not worker.startswith("gw"):
        return url
    base, _, db = url.rstrip("/").rpartition("/")
    number = (int(db) if db.isdigit() else 0) + int(worker[2:])
    if number > 15:
        raise RuntimeError(
            f"REDIS_URL={url} leaves no Redis db for xdist worker {worker} (dbs 0-15): "
            "point REDIS_URL at a lower db number, or run fewer workers."
        )
    return f"{base}/{number}"


def apply_worker_redis_url(environ) -> None:
    """Point ``environ["REDIS_URL"]`` at this worker's db. Idempotent: the
    URL given to the run is kept in ``SMSOFFICE_REDIS_URL_OF_RUN`` and the
    worker's db always derived from it, so a subprocess a test starts (which
    inherits the derived URL and the worker name) lands on the same db
    instead of adding the worker number a second time."""
    if not environ.get("REDIS_URL"):
        return
    run_url = environ.setdefault("SMSOFFICE_REDIS_URL_OF_RUN", environ["REDIS_URL"])
    environ["REDIS_URL"] = _redis_url_of_this_worker(
        run_url, environ.get("PYTEST_XDIST_WORKER", "")
    )


# Set before the settings read it, and in the environment so that the
# subprocesses a test starts agree with it.
apply_worker_redis_url(os.environ)

from smsoffice.settings import *  # noqa: E402, F403

# Tests create and log in users by the hundred; the production hasher (PBKDF2,
# a million rounds, ~0.5 s a password on a CI core) would spend minutes on
# nothing the tests assert. Production settings are untouched: the tests that
# start Django as production (subprocesses on smsoffice.settings) keep PBKDF2.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
