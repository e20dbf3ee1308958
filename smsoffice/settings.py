"""Django settings for smsoffice.

Every value that differs between a laptop and production comes from the
environment (or a ``.env`` file beside ``manage.py``) through django-environ;
``.env.example`` documents each one.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE names another file, or "" for none (the tests that start Django as
# production must not pick up the development .env that `make run` writes).
_env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _env_file:
    environ.Env.read_env(_env_file, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# Production (DEBUG off) refuses to start without a real SECRET_KEY: with the
# repository's development key anyone could forge sessions and password-reset
# links. Only DEBUG may fall back to it.
DEV_SECRET_KEY = "insecure-dev-key-only-for-tests-and-make-run"
_PLACEHOLDER_KEYS = {DEV_SECRET_KEY, "change-me", "changeme", "secret"}
SECRET_KEY = env.str("SECRET_KEY", default="") or (DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (
    SECRET_KEY in _PLACEHOLDER_KEYS
    or SECRET_KEY.startswith("django-insecure-")
    or len(SECRET_KEY) < 32
):
    raise ImproperlyConfigured(
        "SECRET_KEY is missing, a placeholder or the development key, and DEBUG is off. "
        "Set SECRET_KEY in the environment (or .env) to a long random string, e.g. the "
        'output of: python -c "import secrets; print(secrets.token_urlsafe(50))". '
        "For local development set DEBUG=True instead (make run does)."
    )
# --- Encryption of secrets at rest (smsoffice.secretbox) ----------------------
# CREDENTIALS_KEYS: comma-separated Fernet keys; the first encrypts, all
# decrypt (rotation: put a new key first, run `manage.py credentials_rotate`,
# then drop the old one). Production refuses to start without one; DEBUG
# alone falls back to a key derived from SECRET_KEY.
CREDENTIALS_KEYS = env.list("CREDENTIALS_KEYS", default=[])
if not CREDENTIALS_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEYS is not set, and DEBUG is off: provider credentials are "
            "encrypted with it. Set it to a Fernet key, made with: python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        )
    CREDENTIALS_KEYS = [
        base64.urlsafe_b64encode(
            hashlib.sha256(f"smsoffice-dev-credentials:{SECRET_KEY}".encode()).digest()
        ).decode()
    ]
for _position, _key in enumerate(CREDENTIALS_KEYS, 1):
    try:
        Fernet(_key.encode())
    except ValueError:
        raise ImproperlyConfigured(
            f"CREDENTIALS_KEYS: key {_position} is not a Fernet key (32 url-safe base64 "
            "bytes, 44 characters). Make one with: python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        ) from None

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "django_htmx",
    "import_export",
    "axes",
    "csp",
    "smsoffice",
    "contacts",
    "providers",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # request.htmx: the campaign page's live parts answer partials to htmx.
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "smsoffice.urls"
WSGI_APPLICATION = "smsoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
# SQLite by default, at an absolute path so manage.py, the worker and the
# tests agree whatever the working directory. WAL lets the web process read
# while the worker writes; IMMEDIATE transactions take the write lock at
# BEGIN, so two writers queue on the busy timeout instead of failing with
# "database is locked" half-way through a transaction.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA busy_timeout=20000;"
                "PRAGMA foreign_keys=ON;"
            ),
        }
    )
else:
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and task queue --------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    # The database cache is shared by the web process and every worker, which
    # the rate limiter needs; local memory would give each process its own.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "smsoffice_cache",
        }
    }

# timeout (task may run) < retry (broker re-delivers an unacknowledged task):
# a slow task is never handed to a second worker while the first still runs.
Q_CLUSTER = {
    "name": "smsoffice",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 90,
    "retry": 180,
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 0.5

# --- Auth, i18n ------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
# Where a login lands when its ``next`` is missing or foreign (refused by Django).
LOGIN_REDIRECT_URL = "admin:index"

# --- Login throttling (django-axes) ------------------------------------------
# django-axes: maintained (Jazzband), stores attempts in the database (works
# the same on SQLite and PostgreSQL, and across every web process), and reads
# the client address through django-ipware so a proxy can be trusted exactly.
# A login is refused once a username, or a client address, has had
# AXES_FAILURE_LIMIT failures; the lock lifts after AXES_COOLOFF_MINUTES (or
# when an admin runs `manage.py axes_reset_username <name>`). Locking per
# username stops a password being guessed from many addresses; per address
# stops one client trying many usernames.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "smsoffice.clientip.client_ip"
# Behind a reverse proxy: TRUSTED_PROXY_COUNT is how many proxies of ours each
# append the address they received from to CLIENT_IP_HEADER (nginx's
# $proxy_add_x_forwarded_for does). With 0 (the default, no proxy) only the
# socket address counts, so a forged header cannot dodge the lock.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="HTTP_X_FORWARDED_FOR")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# One date format everywhere: "3 Dec 2026, 18:30" (smsoffice/formats/en/formats.py).
FORMAT_MODULE_PATH = ["smsoffice.formats"]

# Region used to read national-format numbers such as "0400 123 456".
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="AU")

# --- Static files ------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- CSV import/export (django-import-export) ---------------------------------
# Imports run in a transaction: a file with any bad row writes nothing.
IMPORT_EXPORT_USE_TRANSACTIONS = True
# One summary audit entry per import instead of one per row (contacts.admin).
IMPORT_EXPORT_SKIP_ADMIN_LOG = True
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "add"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"
# The library's own escaping only strips leading "="; every export instead goes
# through smsoffice.csvsafe.safe_cell (contacts.resources), which quotes cells
# starting with = + - @ tab or CR so a spreadsheet shows them as text.
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = False

# --- Email (low-balance warnings) ---------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="smsoffice@localhost")

# --- Security (all on when DEBUG is off) -------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Off by default so a TLS-terminating proxy can own redirects; production sets it.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp). The admin and our templates load
# scripts only from static files (no inline script), so scripts are 'self'
# only; inline style attributes (used by the admin and import-export
# templates) stay allowed, as a style cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Provider backends ---------------------------------------------------------
# Like EMAIL_BACKEND: ProviderAccount.backend names a key here, the value is a
# dotted path to an SmsBackend subclass. Add your own without touching code.
SMS_BACKENDS = {
    "simulator": "providers.backends.simulator.SimulatorBackend",
    "smseveryone": "providers.backends.smseveryone.SmsEveryoneBackend",
    "thesmsworks": "providers.backends.thesmsworks.TheSmsWorksBackend",
    "fullsms": "providers.backends.fullsms.FullSmsBackend",
    "transmitsms": "providers.backends.transmitsms.TransmitSmsBackend",
    "callr": "providers.backends.callr.CallrBackend",
    # FullSMS, TransmitSMS and CALLR are listed here once their backends exist.
}

# Public base URL used to build webhook addresses shown to staff
# (e.g. https://sms.example.com). Empty: built from the current request.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")

# Every record is redacted when created (smsoffice.logredact, installed by
# the smsoffice app): webhook tokens, authorization values, credentials. The
# filter on the handler covers records made before that; django.server and
# django-q are given that handler (they would otherwise bring their own).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "smsoffice.logredact.RedactSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own console and mail_admins handlers are dropped: its records
        # go to the root handler, which has the filter.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django-q": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
