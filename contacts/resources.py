"""django-import-export resources: contact export, opt-out import/export.

Contacts are imported by :mod:`contacts.importing` (a background job that
streams big files in short transactions); django-import-export compares and
saves row by row in one transaction, which is fine for exports and for the
opt-out list (small files, each opt-out through ``optout_add``), not for
100,000 contacts. ``ContactResource`` still imports (all or nothing, in one
transaction) for scripts and small files, with the same rules.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets

from contacts.models import Contact, ContactList, OptOut
from contacts.phones import normalize_phone
from contacts.services import optout_add
from smsoffice.csvsafe import FORMULA_STARTS, safe_cell


def unescape_cell(value):
    """Undo :func:`safe_cell` on an imported cell, so a file we exported
    imports back unchanged (``'+61400123456`` → ``+61400123456``)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1] in FORMULA_STARTS:
        return value[1:]
    return value


class PhoneWidget(widgets.CharWidget):
    """Reads any phone format and stores E.164; a bad number fails its row."""

    def clean(self, value, row=None, **kwargs):
        value = super().clean(value, row, **kwargs)
        try:
            return normalize_phone(value or "")
        except ValidationError as exc:
            raise ValueError(exc.messages[0]) from None


class ListNamesWidget(widgets.ManyToManyWidget):
    """List names separated by ``;``. An unknown name fails the row instead of
    being dropped silently."""

    def __init__(self):
        super().__init__(ContactList, field="name", separator=";")

    def clean(self, value, row=None, **kwargs):
        names = [name.strip() for name in str(value or "").split(self.separator) if name.strip()]
        if not names:
            return ContactList.objects.none()
        found = ContactList.objects.filter(name__in=names)
        missing = sorted(set(names) - {cl.name for cl in found})
        if missing:
            raise ValueError(
                f"Unknown contact list(s): {', '.join(missing)}. Create them under "
                "Contact lists first, or correct the spelling."
            )
        return found


class AddToListsField(fields.Field):
    """Importing adds the contact to the named lists; it never removes it from others."""

    def save(self, instance, row, is_m2m=False, **kwargs):
        lists = self.clean(row, **kwargs)
        if lists:
            instance.lists.add(*lists)


class PhoneKeyedResource(resources.ModelResource):
    """Rows are matched on the normalised phone. A row whose phone cannot be read
    is treated as new, so the phone error is reported as a validation error of
    that row (with its message) rather than as a crash of the import.

    Every exported cell goes through :func:`smsoffice.csvsafe.safe_cell`
    (whatever the format), and imported cells are unescaped again.
    """

    def export_field(self, field, instance, **kwargs):
        return safe_cell(super().export_field(field, instance, **kwargs))

    def before_import_row(self, row, **kwargs):
        for column in list(row.keys()):
            row[column] = unescape_cell(row[column])

    def import_data(self, dataset, **kwargs):
        # All or nothing, also outside the admin's dry-run/confirm flow.
        kwargs.setdefault("rollback_on_validation_errors", True)
        kwargs.setdefault("use_transactions", True)
        return super().import_data(dataset, **kwargs)

    def get_instance(self, instance_loader, row):
        try:
            return super().get_instance(instance_loader, row)
        except ValueError:
            return None


class ContactResource(PhoneKeyedResource):
    phone = fields.Field(attribute="phone", column_name="phone", widget=PhoneWidget())
    lists = AddToListsField(attribute="lists", column_name="lists", widget=ListNamesWidget())
    custom_fields = fields.Field(column_name="custom_fields")

    KNOWN_COLUMNS = {"id", "phone", "first_name", "last_name", "email", "lists", "custom_fields"}

    class Meta:
        model = Contact
        import_id_fields = ["phone"]
        fields = ["phone", "first_name", "last_name", "email", "lists", "custom_fields"]
        export_order = fields
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True

    def dehydrate_custom_fields(self, contact: Contact) -> str:
        return json.dumps(contact.custom_fields or {}, ensure_ascii=False, sort_keys=True)

    def import_instance(self, instance, row, **kwargs):
        # Collect every problem of the row (fields, lists, custom fields) so the
        # user fixes the file once, not once per error.
        errors: dict[str, list] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors.update(exc.error_dict)
        if "lists" in row:
            try:
                self.fields["lists"].clean(row)
            except ValueError as exc:
                errors["lists"] = [ValidationError(str(exc))]
        extra = dict(instance.custom_fields or {})
        raw_json = (row.get("custom_fields") or "").strip()
        if raw_json:
            try:
                parsed = json.loads(raw_json)
            except json.JSONDecodeError as exc:
                parsed = None
                errors["custom_fields"] = [
                    ValidationError(f"custom_fields must be a JSON object: {exc.msg}.")
                ]
            if isinstance(parsed, dict):
                extra.update(parsed)
            elif parsed is not None:
                errors["custom_fields"] = [ValidationError("custom_fields must be a JSON object.")]
        if errors:
            raise ValidationError(errors)
        # Any other column becomes a custom field usable as {{ column }} in templates.
        for column, value in row.items():
            if column and column not in self.KNOWN_COLUMNS and value not in (None, ""):
                extra[str(column).strip()] = str(value)
        instance.custom_fields = extra


class OptOutResource(PhoneKeyedResource):
    phone = fields.Field(attribute="phone", column_name="phone", widget=PhoneWidget())

    class Meta:
        model = OptOut
        import_id_fields = ["phone"]
        fields = ["phone", "reason", "source", "created_at"]
        export_order = fields
        skip_unchanged = True
        clean_model_instances = True

    def before_import_row(self, row, **kwargs):
        super().before_import_row(row, **kwargs)
        # Whatever the file says, these opt-outs came from an import.
        row["source"] = OptOut.Source.IMPORT
        self._importing_user = kwargs.get("user")

    def do_instance_save(self, instance, is_create):
        # New opt-outs go through the service (normalisation, logging, races);
        # an existing one only has its reason updated.
        if not is_create:
            return super().do_instance_save(instance, is_create)
        saved = optout_add(
            phone=instance.phone,
            source=OptOut.Source.IMPORT,
            reason=instance.reason,
            user=getattr(self, "_importing_user", None),
        )
        instance.pk = saved.pk
