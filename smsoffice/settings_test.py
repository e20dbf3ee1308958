"""Settings for the test suite and benchmarks: production settings, a test-only key.

The production settings refuse to start without a real SECRET_KEY when DEBUG
is off (as the suite runs); this key exists only here and in test processes.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-key-never-used-outside-the-test-suite-0123456789")
os.environ.setdefault("CREDENTIALS_KEYS", "dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0wMTIzNDU=")

from smsoffice.settings import *  # noqa: F403
