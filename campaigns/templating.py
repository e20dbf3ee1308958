"""Personalised message bodies: ``Hi {{ first_name }}, your table at {{ store }}``.

Syntax: ``{{ name }}`` or ``{{ name|default:"there" }}`` (single or double
quotes), spaces optional. Names are ASCII identifiers. Rendering is plain
text: values are inserted as they are, never HTML-escaped (an SMS is not
HTML). Nothing else of the Django template language exists here, so a body
can never run code or loop.

Values: the contact's ``first_name``, ``last_name``, ``phone`` (E.164),
``email``, then any key of its ``custom_fields`` (a custom key named like a
built-in is ignored). Numbers render as written, JSON booleans as
``true``/``false``. A value that is missing, ``None`` or blank falls back
to the inline default, then to the template's ``defaults``, then to the
empty string (the quote warns how many messages that affects).

Known placeholders (the rule that refuses typos when a template or campaign
is saved): a name is known if it is a built-in contact field, a key of the
template's ``defaults``, or a key present in at least one contact's
``custom_fields``. An inline default does not make a name known: it covers
contacts lacking a value, it is not a way to type any word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from django.core.exceptions import ValidationError

#: Contact model fields usable as placeholders.
BUILTIN_FIELDS: tuple[str, ...] = ("first_name", "last_name", "phone", "email")

_TAG = re.compile(r"\{\{(.*?)\}\}|\{%.*?%\}", re.S)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(
    r"""\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*
        (?:\|\s*default\s*:\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)')\s*)?$""",
    re.X | re.S,
)


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    default: str | None  # inline default, None when not given


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A body parsed once, rendered many times (see :func:`compile_template`).

    ``slots`` are the placeholders in order of appearance and ``fmt`` the
    body as a ``str.format`` string with one positional field per slot, so
    rendering is one C-level ``format`` call.
    """

    body: str
    parts: tuple[str | Placeholder, ...]
    errors: tuple[str, ...]  # malformed tags, in order
    slots: tuple[Placeholder, ...]
    fmt: str

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.slots)

    @property
    def is_static(self) -> bool:
        """No placeholder: every recipient gets the same text."""
        return not self.slots

    def fallbacks(self, defaults: Mapping[str, object] | None) -> tuple[str | None, ...]:
        """Per slot, the text used when a contact has no value: the inline
        default, else the template default, else None (renders as "")."""
        defaults = defaults or {}
        out: list[str | None] = []
        for slot in self.slots:
            if slot.default is not None:
                out.append(slot.default)
            else:
                out.append(_text(defaults.get(slot.name)))
        return tuple(out)

    def render_values(
        self,
        values: Iterable[object],
        fallbacks: tuple[str | None, ...],
        missing: list[str] | None = None,
    ) -> str:
        """Render from one raw value per slot (see :meth:`render`)."""
        texts: list[str] = []
        for slot, value, fallback in zip(self.slots, values, fallbacks, strict=True):
            if value.__class__ is str and value and not value.isspace():
                texts.append(value)  # the common case, kept cheap for bulk rendering
                continue
            text = _text(value)
            if text is None:
                if fallback is None:
                    text = ""
                    if missing is not None:
                        missing.append(slot.name)
                else:
                    text = fallback
            texts.append(text)
        return self.fmt.format(*texts)

    def render(
        self,
        context: Mapping[str, object],
        defaults: Mapping[str, object] | None = None,
        missing: list[str] | None = None,
    ) -> str:
        """The text for one recipient. Names that rendered as "" for want of
        any value or default are appended to ``missing`` when it is given."""
        if not self.slots:
            return self.body
        return self.render_values(
            [context.get(slot.name) for slot in self.slots], self.fallbacks(defaults), missing
        )


def _text(value: object) -> str | None:
    """A context value as text, or None when it counts as missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return "true" if value else "false"  # as written in the JSON
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@lru_cache(maxsize=256)
def compile_template(body: str) -> CompiledTemplate:
    """Parse ``body`` into literal text and placeholders; malformed tags are
    kept as literal text and described in ``errors``."""
    parts: list[str | Placeholder] = []
    errors: list[str] = []
    pos = 0
    for tag in _TAG.finditer(body):
        if tag.start() > pos:
            parts.append(body[pos : tag.start()])
        inner = tag.group(1)
        found = _PLACEHOLDER.match(inner) if inner is not None else None
        if inner is None:
            errors.append(
                f"{tag.group(0)!r}: template tags are not supported, only placeholders "
                f"such as {{{{ first_name }}}}."
            )
            parts.append(tag.group(0))
        elif found is None:
            errors.append(
                f"{tag.group(0)!r} is not a placeholder: write {{{{ name }}}} or "
                f'{{{{ name|default:"text" }}}} with a field name made of letters, digits '
                f"and _."
            )
            parts.append(tag.group(0))
        else:
            default = found.group("dq") if found.group("dq") is not None else found.group("sq")
            parts.append(Placeholder(found.group("name"), default))
        pos = tag.end()
    if pos < len(body):
        parts.append(body[pos:])
    rest = _TAG.sub("", body)
    if "{{" in rest:
        errors.append("There is a {{ without a closing }}: close the placeholder or remove it.")
    elif "}}" in rest:
        errors.append("There is a }} without an opening {{: complete the placeholder or remove it.")
    merged: list[str | Placeholder] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    slots = tuple(p for p in merged if isinstance(p, Placeholder))
    fmt = "".join(
        p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{}" for p in merged
    )
    return CompiledTemplate(
        body=body, parts=tuple(merged), errors=tuple(errors), slots=slots, fmt=fmt
    )


def render(
    body: str, context: Mapping[str, object], defaults: Mapping[str, object] | None = None
) -> str:
    """Render ``body`` for one contact's ``context`` (plain text, no escaping)."""
    return compile_template(body).render(context, defaults or {})


def placeholders(body: str) -> set[str]:
    """Names used in ``body`` (``{{ first_name }}`` gives ``{"first_name"}``)."""
    return set(compile_template(body).names)


def contact_context(
    *,
    first_name: str = "",
    last_name: str = "",
    phone: str = "",
    email: str = "",
    custom_fields: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The rendering context of a contact: its custom fields, and the
    built-in fields on top (a custom key named like a built-in is ignored)."""
    context: dict[str, object] = dict(custom_fields or {})
    context.update(first_name=first_name, last_name=last_name, phone=phone, email=email)
    return context


def custom_field_exists(name: str) -> bool:
    """Whether at least one contact has ``name`` among its custom fields."""
    from contacts.models import Contact

    return Contact.objects.filter(custom_fields__has_key=name).exists()


def unknown_placeholders(
    body: str,
    *,
    defaults: Mapping[str, object] | None = None,
    known: Iterable[str] | None = None,
) -> set[str]:
    """Names in ``body`` that are not known (see the module docstring).

    ``known`` replaces the database lookup of custom-field keys (for callers
    that already know them); built-ins and ``defaults`` keys are always known.
    """
    always = set(BUILTIN_FIELDS) | set(defaults or {})
    candidates = placeholders(body) - always
    if known is not None:
        return candidates - set(known)
    return {name for name in candidates if not custom_field_exists(name)}


def template_errors(
    body: str,
    *,
    defaults: Mapping[str, object] | None = None,
    known: Iterable[str] | None = None,
) -> list[str]:
    """Every problem of ``body`` as a template: malformed tags and unknown names."""
    compiled = compile_template(body)
    errors = list(compiled.errors)
    unknown = unknown_placeholders(body, defaults=defaults, known=known)
    if unknown:
        names = ", ".join(f"{{{{ {name} }}}}" for name in sorted(unknown))
        errors.append(
            f"Unknown placeholder{'s' if len(unknown) > 1 else ''}: {names}. Use a contact "
            f"field ({', '.join(BUILTIN_FIELDS)}), a custom field some contact has, or add "
            f"the name to the template's defaults."
        )
    return errors


def validate_template(body: str, *, defaults: Mapping[str, object] | None = None) -> None:
    """Raise ``ValidationError`` listing every template error of ``body``."""
    errors = template_errors(body, defaults=defaults)
    if errors:
        raise ValidationError(errors, code="template")


def validate_defaults(defaults: object) -> None:
    """Template ``defaults`` must be a JSON object of name -> text or number."""
    if defaults in (None, ""):
        return
    if not isinstance(defaults, dict):
        raise ValidationError(
            'Defaults must be a JSON object of placeholder name to text, e.g. {"first_name": '
            '"there"}.',
            code="defaults",
        )
    bad_names = [k for k in defaults if not _NAME.fullmatch(str(k))]
    bad_values = [k for k, v in defaults.items() if isinstance(v, dict | list)]
    errors = []
    if bad_names:
        names = ", ".join(map(repr, bad_names))
        errors.append(f"Default names must be made of letters, digits and _: {names}.")
    if bad_values:
        errors.append(
            f"Default values must be text or numbers: fix {', '.join(map(repr, bad_values))}."
        )
    if errors:
        raise ValidationError(errors, code="defaults")
