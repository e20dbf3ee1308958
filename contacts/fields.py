from __future__ import annotations

from django.db import models

from contacts.phones import normalize_phone


class E164PhoneField(models.CharField):
    """A CharField that normalises what it is given to E.164 when cleaned.

    Normalisation happens in ``to_python`` (so in ``full_clean`` and every
    ModelForm, admin included); code that writes directly must pass a value
    from :func:`contacts.phones.normalize_phone`.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 16)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_length") == 16:
            del kwargs["max_length"]
        return name, path, args, kwargs

    def get_prep_value(self, value):
        # Lookups and saves take the value as given (already E.164): normalising
        # here would cost a parse per value in every bulk query.
        value = models.Field.get_prep_value(self, value)
        return value if value is None else str(value)

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        return normalize_phone(value)
