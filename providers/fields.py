"""A JSON value stored encrypted (smsoffice.secretbox): provider credentials."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from smsoffice.secretbox import InvalidToken, decrypt_text, encrypt_text, looks_encrypted


class EncryptedJSONField(models.TextField):
    """A JSON object in Python, a Fernet token in the database.

    Reading a row whose token no configured key opens is an error that says
    so (rather than an empty value a send would then use). A plain JSON text
    (a row written before encryption) is still read, and is encrypted the
    next time it is saved or by ``manage.py credentials_rotate``. Not usable
    in lookups: each encryption of the same value differs.
    """

    description = "JSON encrypted at rest"

    # For mypy's Django plugin: Python code reads and writes a dict.
    _pyi_private_set_type: dict[str, Any]  # type: ignore[assignment]
    _pyi_private_get_type: dict[str, Any]  # type: ignore[assignment]

    def from_db_value(self, value, expression, connection) -> Any:
        return self._decode(value)

    def to_python(self, value) -> Any:
        if value is None or isinstance(value, dict | list):
            return value
        return self._decode(value)

    def _decode(self, value: str | None) -> Any:
        if value is None or value == "":
            return value
        if looks_encrypted(value):
            try:
                return json.loads(decrypt_text(value))
            except InvalidToken:
                raise ImproperlyConfigured(
                    f"{self.model.__name__}.{self.name}: a stored value cannot be decrypted "
                    "with CREDENTIALS_KEYS. Add the key it was encrypted with back to "
                    "CREDENTIALS_KEYS (after the new one), then run "
                    "`manage.py credentials_rotate`."
                ) from None
        return json.loads(value)  # written before encryption

    def get_prep_value(self, value) -> str | None:
        if value is None:
            return None
        return encrypt_text(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj) -> str:
        # Serialisation (dumpdata) writes the ciphertext, never the secret.
        return self.get_prep_value(self.value_from_object(obj)) or ""
