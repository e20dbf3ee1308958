"""The SMS measure: which encoding a text needs and how many parts it is billed as.

Rules (GSM 03.38 / 3GPP TS 23.038, and every provider's docs):

- A text whose characters are all in the GSM 7-bit alphabet is sent as
  GSM-7. Characters of the extension table (``| ^ € { } [ ] ~ \\`` and form
  feed) are an escape plus a character, so they take 2 septets.
- Any other character switches the whole text to UCS-2, counted in UTF-16
  code units (an emoji outside the BMP takes 2).
- One SMS holds 160 GSM-7 septets or 70 UCS-2 units. A longer text is sent
  in parts of 153 / 67 (the rest of each part is the concatenation header),
  and a part never ends between the two halves of an escape pair or of a
  surrogate pair: such a character moves whole to the next part. Segments
  are therefore counted by packing the parts, not by dividing.
- Empty text is 0 segments.

The alphabet comes from the ``gsm0338`` codec (decoded once at import), not
from a copied table. Everything here is pure and safe to call per recipient.
"""

from __future__ import annotations

import contextlib
import math
import unicodedata
from dataclasses import dataclass, field

import gsm0338  # noqa: F401  (importing registers the "gsm03.38" codec)

GSM7 = "GSM-7"
UCS2 = "UCS-2"

#: Units in a single-part message and per part of a concatenated one.
SINGLE_LIMIT = {GSM7: 160, UCS2: 70}
PART_LIMIT = {GSM7: 153, UCS2: 67}


def _alphabet() -> tuple[frozenset[str], frozenset[str]]:
    """(basic, extension) character sets, read out of the gsm0338 codec.

    Every septet 0x00-0x7F is decoded alone (basic table) and after the
    escape 0x1B (extension table). The escape decodes to nothing on its own,
    so it is in neither set: a literal ESC in a text is not sendable as GSM.
    """
    basic: set[str] = set()
    extension: set[str] = set()
    for septet in range(0x80):
        with contextlib.suppress(UnicodeDecodeError):
            basic.update(bytes([septet]).decode("gsm03.38"))
        with contextlib.suppress(UnicodeDecodeError):
            extension.update(bytes([0x1B, septet]).decode("gsm03.38"))
    return frozenset(basic), frozenset(extension)


GSM_BASIC, GSM_EXTENSION = _alphabet()
GSM_ALL = GSM_BASIC | GSM_EXTENSION


def is_gsm(char: str) -> bool:
    """Whether ``char`` (one character) can be sent in GSM-7."""
    return char in GSM_ALL


def char_units(char: str, encoding: str) -> int:
    """Units one character takes in ``encoding`` (1 or 2)."""
    if encoding == GSM7:
        return 2 if char in GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


@dataclass(frozen=True, slots=True)
class SmsMeasure:
    """What a text costs as an SMS.

    ``units`` are GSM-7 septets or UCS-2 (UTF-16) code units; ``characters``
    are Unicode code points (Python ``len``); ``non_gsm`` lists each
    character that forced UCS-2 with its code-point position, in order.
    ``remaining`` is the units still free before one more segment starts.
    """

    encoding: str
    units: int
    segments: int
    characters: int
    non_gsm: list[tuple[int, str]] = field(default_factory=list)
    remaining: int = 0

    @property
    def per_part(self) -> int:
        """Capacity of one part: 160/70 for a single SMS, 153/67 once split."""
        if self.segments <= 1:
            return SINGLE_LIMIT[self.encoding]
        return PART_LIMIT[self.encoding]

    def as_dict(self) -> dict:
        """JSON-safe form (for the live counter and quotes)."""
        return {
            "encoding": self.encoding,
            "units": self.units,
            "segments": self.segments,
            "characters": self.characters,
            "per_part": self.per_part,
            "remaining": self.remaining,
            "non_gsm": [
                {"position": pos, "char": char, "code": f"U+{ord(char):04X}", "name": _name(char)}
                for pos, char in self.non_gsm
            ],
        }


_EMPTY = SmsMeasure(encoding=GSM7, units=0, segments=0, characters=0, remaining=SINGLE_LIMIT[GSM7])


def _name(char: str) -> str:
    return unicodedata.name(char, f"U+{ord(char):04X}").title()


def measure(text: str) -> SmsMeasure:
    """Measure ``text`` as one SMS message (see the module docstring for the rules)."""
    if not text:
        return _EMPTY
    chars = set(text)
    characters = len(text)
    if chars <= GSM_BASIC:
        # The common case: every character is one septet, so parts are always full.
        return _sized(GSM7, text, characters, characters, wide=False)
    if chars <= GSM_ALL:
        units = characters + sum(text.count(c) for c in chars & GSM_EXTENSION)
        return _sized(GSM7, text, units, characters, wide=True)
    non_gsm = [(i, c) for i, c in enumerate(text) if c not in GSM_ALL]
    astral = sum(1 for c in text if ord(c) > 0xFFFF) if max(chars) > "\uffff" else 0
    return _sized(UCS2, text, characters + astral, characters, wide=bool(astral), non_gsm=non_gsm)


def _sized(
    encoding: str,
    text: str,
    units: int,
    characters: int,
    *,
    wide: bool,
    non_gsm: list[tuple[int, str]] | None = None,
) -> SmsMeasure:
    """Count segments; ``wide`` says some characters take 2 units, which
    only matters (needs real packing) once the text is split."""
    single = SINGLE_LIMIT[encoding]
    if units <= single:
        segments, remaining = 1, single - units
    elif not wide:
        per_part = PART_LIMIT[encoding]
        segments = math.ceil(units / per_part)
        remaining = segments * per_part - units
    else:
        parts = _pack(text, encoding)
        segments, remaining = len(parts), PART_LIMIT[encoding] - parts[-1][2]
    return SmsMeasure(
        encoding=encoding,
        units=units,
        segments=segments,
        characters=characters,
        non_gsm=non_gsm or [],
        remaining=remaining,
    )


def _pack(text: str, encoding: str) -> list[tuple[int, int, int]]:
    """Greedy packing into parts: [(start, end, units)], positions in code points.

    A 2-unit character that does not fit in what is left of a part starts
    the next part, so no part ends inside an escape or surrogate pair.
    """
    limit = PART_LIMIT[encoding]
    parts: list[tuple[int, int, int]] = []
    start = 0
    used = 0
    for i, char in enumerate(text):
        cost = char_units(char, encoding)
        if used + cost > limit:
            parts.append((start, i, used))
            start, used = i, 0
        used += cost
    parts.append((start, len(text), used))
    return parts


def split_parts(text: str) -> list[str]:
    """The parts ``text`` is sent in, as the provider splits it.

    ``len(split_parts(t)) == measure(t).segments`` for every text; a text
    that fits in one SMS is one part, empty text is no part.
    """
    m = measure(text)
    if m.segments == 0:
        return []
    if m.segments == 1:
        return [text]
    return [text[start:end] for start, end, _ in _pack(text, m.encoding)]


# --------------------------------------------------------------------------
# "Make it GSM": an explicit proposal, never applied silently.

#: Look-alikes whose meaning is unchanged in GSM-7. Anything not listed is
#: tried through Unicode compatibility (NFKC: ligatures, full-width forms,
#: odd spaces) and then by dropping accents (NFKD), in that order.
LOOKALIKES: dict[str, str] = {
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark / apostrophe
    "\u201a": "'",  # single low-9 quotation mark
    "\u201b": "'",  # single high-reversed-9 quotation mark
    "\u2032": "'",  # prime
    "\u00b4": "'",  # acute accent
    "`": "'",  # grave accent (not in GSM)
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u201f": '"',  # double high-reversed-9 quotation mark
    "\u2033": '"',  # double prime
    "\u00ab": '"',  # left-pointing double angle quotation mark
    "\u00bb": '"',  # right-pointing double angle quotation mark
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # horizontal ellipsis
    "\u00a0": " ",  # no-break space
    "\u2007": " ",  # figure space
    "\u202f": " ",  # narrow no-break space
    "\t": " ",  # tab
    "\u2022": "-",  # bullet
    "\u00b7": ".",  # middle dot
    "\u200b": "",  # zero width space
    "\u200c": "",  # zero width non-joiner
    "\u200d": "",  # zero width joiner
    "\u2060": "",  # word joiner
    "\ufeff": "",  # zero width no-break space (BOM)
    "\u00ad": "",  # soft hyphen
}


@dataclass(frozen=True, slots=True)
class Replacement:
    position: int  # code-point index in the original text
    char: str
    replacement: str

    def as_dict(self) -> dict:
        return {
            "position": self.position,
            "char": self.char,
            "replacement": self.replacement,
            "name": _name(self.char),
        }


@dataclass(frozen=True, slots=True)
class GsmSuggestion:
    """A proposed GSM-7 version of a text, for a person to accept or not.

    ``replacements`` are the changes, ``kept`` the non-GSM characters no
    replacement exists for (so the proposal may still be UCS-2).
    """

    original: str
    text: str
    replacements: list[Replacement]
    kept: list[tuple[int, str]]
    before: SmsMeasure
    after: SmsMeasure

    @property
    def changed(self) -> bool:
        return self.text != self.original

    @property
    def segments_before(self) -> int:
        return self.before.segments

    @property
    def segments_after(self) -> int:
        return self.after.segments

    @property
    def segments_saved(self) -> int:
        return self.before.segments - self.after.segments

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "changed": self.changed,
            "replacements": [r.as_dict() for r in self.replacements],
            "kept": [{"position": p, "char": c, "name": _name(c)} for p, c in self.kept],
            "encoding_before": self.before.encoding,
            "encoding_after": self.after.encoding,
            "segments_before": self.segments_before,
            "segments_after": self.segments_after,
            "segments_saved": self.segments_saved,
        }


def _gsm_equivalent(char: str) -> str | None:
    if char in LOOKALIKES:
        return LOOKALIKES[char]
    compat = unicodedata.normalize("NFKC", char)
    if compat != char and compat and set(compat) <= GSM_ALL:
        return compat
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
    )
    if stripped != char and stripped and set(stripped) <= GSM_ALL:
        return stripped
    return None


def suggest_gsm_replacements(text: str) -> GsmSuggestion:
    """Propose a GSM-7 version of ``text`` by replacing look-alike characters.

    Curly quotes become straight ones, dashes a hyphen, an ellipsis three
    dots, unusual spaces a space, invisible characters go, accented letters
    outside the GSM alphabet lose their accent. Emoji and scripts with no
    GSM equivalent are kept (listed in ``kept``). Nothing is applied: the
    caller shows the proposal and the segments it saves.
    """
    before = measure(text)
    replacements: list[Replacement] = []
    kept: list[tuple[int, str]] = []
    out: list[str] = []
    for pos, char in enumerate(text):
        if char in GSM_ALL:
            out.append(char)
            continue
        equivalent = _gsm_equivalent(char)
        if equivalent is None:
            kept.append((pos, char))
            out.append(char)
        else:
            replacements.append(Replacement(pos, char, equivalent))
            out.append(equivalent)
    proposed = "".join(out)
    return GsmSuggestion(
        original=text,
        text=proposed,
        replacements=replacements,
        kept=kept,
        before=before,
        after=measure(proposed),
    )
