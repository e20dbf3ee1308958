"""Settings for the test suite and benchmarks: production settings, a test-only key.

The production settings refuse to start without a real SECRET_KEY when DEBUG
is off (as the suite runs); this key exists only here and in test processes.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-key-never-used-outside-the-test-suite-0123456789")
os.environ.setdefault("CREDENTIALS_KEYS", "dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0wMTIzNDU=")

from smsoffice.settings import *  # noqa: F403

# Tests create and log in users by the hundred; the production hasher (PBKDF2,
# a million rounds, ~0.5 s a password on a CI core) would spend minutes on
# nothing the tests assert. Production settings are untouched: the tests that
# start Django as production (subprocesses on smsoffice.settings) keep PBKDF2.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
