"""The test settings give each pytest-xdist worker its own Redis db, the same
in the worker and in every subprocess a test of that worker starts."""

from smsoffice.settings_test import apply_worker_redis_url


def test_a_worker_gets_base_plus_its_number_and_a_subprocess_the_same_db():
    worker = {"REDIS_URL": "redis://127.0.0.1:6379/14", "PYTEST_XDIST_WORKER": "gw1"}
    apply_worker_redis_url(worker)
    assert worker["REDIS_URL"] == "redis://127.0.0.1:6379/15"

    # A subprocess inherits the derived URL and the worker name, and loads
    # the settings again: it must not add the worker number a second time
    # (db 16 does not exist; CI failed on it).
    subprocess_env = dict(worker)
    apply_worker_redis_url(subprocess_env)
    assert subprocess_env["REDIS_URL"] == "redis://127.0.0.1:6379/15"


def test_outside_xdist_the_url_is_kept():
    env = {"REDIS_URL": "redis://127.0.0.1:6379/15"}
    apply_worker_redis_url(env)
    assert env["REDIS_URL"] == "redis://127.0.0.1:6379/15"
