"""providers.sms: encodings, units and segments, counted the way providers bill."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.sms import (
    GSM7,
    UCS2,
    char_units,
    measure,
    split_parts,
    suggest_gsm_replacements,
)

A = "a"
EURO = "€"  # GSM extension table: escape + character, 2 septets
CURLY = "\u2019"  # right single quotation mark: not GSM
EMOJI = "\U0001f600"  # outside the BMP: a surrogate pair in UTF-16, 2 units
GSM_ACCENTS = "£¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉÄÖÑÜ§¿äöñüà¤¡"


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        pytest.param("", GSM7, 0, 0, id="empty is 0 segments"),
        pytest.param(A * 160, GSM7, 160, 1, id="160 GSM fits one SMS"),
        pytest.param(A * 161, GSM7, 161, 2, id="161 GSM is two (docs: 153 + 8)"),
        # SMS Everyone's table: 2 SMS = 306, 3 = 459, 4 = 612, 5 = 765 characters.
        pytest.param(A * 306, GSM7, 306, 2, id="doc: 2 SMS = 306"),
        pytest.param(A * 307, GSM7, 307, 3, id="307 starts a third part"),
        pytest.param(A * 459, GSM7, 459, 3, id="doc: 3 SMS = 459"),
        pytest.param(A * 460, GSM7, 460, 4, id="460 starts a fourth part"),
        pytest.param(A * 612, GSM7, 612, 4, id="doc: 4 SMS = 612"),
        pytest.param(A * 765, GSM7, 765, 5, id="doc: 5 SMS = 765"),
        pytest.param(A * 766, GSM7, 766, 6, id="766 starts a sixth part"),
        # Unicode table: 1 SMS = 70, 2 = 134, 3 = 201, 4 = 268, 5 = 335.
        pytest.param(CURLY * 70, UCS2, 70, 1, id="70 UCS-2 fits one SMS"),
        pytest.param(CURLY * 71, UCS2, 71, 2, id="71 UCS-2 is two"),
        pytest.param(CURLY * 134, UCS2, 134, 2, id="doc: 2 SMS = 134"),
        pytest.param(CURLY * 135, UCS2, 135, 3, id="135 starts a third part"),
        pytest.param(CURLY * 201, UCS2, 201, 3, id="doc: 3 SMS = 201"),
        pytest.param(CURLY * 268, UCS2, 268, 4, id="doc: 4 SMS = 268"),
        pytest.param(CURLY * 335, UCS2, 335, 5, id="doc: 5 SMS = 335"),
        # Extension characters count 2.
        pytest.param(EURO * 80, GSM7, 160, 1, id="80 euro signs fill one SMS"),
        pytest.param(EURO * 81, GSM7, 162, 2, id="81 euro signs need two"),
        pytest.param("|^{}[]~\\\x0c", GSM7, 18, 1, id="every extension char counts 2"),
        pytest.param(A * 158 + "[", GSM7, 160, 1, id="escape ending exactly at 160"),
        pytest.param(A * 159 + "]", GSM7, 161, 2, id="escape pushing past 160"),
        # An extension character at a part boundary moves whole to the next part.
        pytest.param(A * 152 + EURO + A * 152, GSM7, 306, 3, id="escape never split: 306 is 3"),
        pytest.param(A * 151 + EURO + A * 153, GSM7, 306, 2, id="escape ending a part: 306 is 2"),
        # Emoji: 2 UTF-16 units, and a surrogate pair is never split.
        pytest.param(EMOJI * 35, UCS2, 70, 1, id="35 emoji fill one SMS"),
        pytest.param(EMOJI * 36, UCS2, 72, 2, id="36 emoji need two"),
        pytest.param(A * 66 + EMOJI + A * 66, UCS2, 134, 3, id="surrogate never split: 134 is 3"),
        pytest.param(A * 65 + EMOJI + A * 67, UCS2, 134, 2, id="emoji ending a part: 134 is 2"),
        # One non-GSM character switches the whole message to UCS-2.
        pytest.param(A * 159 + "'", GSM7, 160, 1, id="straight apostrophe stays GSM"),
        pytest.param(A * 159 + CURLY, UCS2, 160, 3, id="one curly quote makes 160 cost 3"),
        pytest.param(A * 305 + CURLY, UCS2, 306, 5, id="one curly quote makes 306 cost 5"),
        pytest.param(EURO * 10 + CURLY, UCS2, 11, 1, id="in UCS-2 an extension char counts 1"),
        pytest.param("Tab\there", UCS2, 8, 1, id="tab is not GSM"),
        pytest.param(GSM_ACCENTS, GSM7, len(GSM_ACCENTS), 1, id="GSM accents are 1 septet"),
    ],
)
def test_measure_table(text, encoding, units, segments):
    m = measure(text)
    assert (m.encoding, m.units, m.segments) == (encoding, units, segments)
    assert m.characters == len(text)
    assert len(split_parts(text)) == segments


def test_the_sms_works_example_161_characters_is_153_plus_8():
    assert [len(part) for part in split_parts(A * 161)] == [153, 8]


def test_escape_at_boundary_starts_the_next_part():
    parts = split_parts(A * 152 + EURO + A * 152)
    assert [len(p) for p in parts] == [152, 152, 1]
    assert parts[1].startswith(EURO)


def test_emoji_at_boundary_starts_the_next_part():
    parts = split_parts(A * 66 + EMOJI + A * 66)
    assert parts[0] == A * 66
    assert parts[1].startswith(EMOJI)
    assert [len(p) for p in parts] == [66, 66, 1]


def test_non_gsm_lists_each_offending_character_with_its_position():
    m = measure(f"It{CURLY}s {EMOJI} time{CURLY}")
    assert m.non_gsm == [(2, CURLY), (5, EMOJI), (11, CURLY)]
    assert m.characters == 12
    assert m.units == 13  # the emoji is 2 UTF-16 units


def test_gsm_text_has_no_non_gsm_characters():
    assert measure("Hello {world} €5").non_gsm == []


def test_remaining_counts_units_left_before_the_next_segment():
    assert measure(A * 150).remaining == 10
    assert measure(A * 161).remaining == 145  # second part of 153 holds 8
    assert measure(A * 152 + EURO + A * 152).remaining == 152  # third part holds 1
    assert measure(CURLY * 60).remaining == 10
    assert measure("").remaining == 160


def test_as_dict_is_json_ready_and_names_the_characters():
    data = measure(f"Hi{CURLY}").as_dict()
    assert data["encoding"] == UCS2
    assert data["per_part"] == 70
    assert data["non_gsm"] == [
        {"position": 2, "char": CURLY, "code": "U+2019", "name": "Right Single Quotation Mark"}
    ]


gsm_heavy = st.text(alphabet=st.sampled_from(list("abcXYZ 019.,\n€[]{}|^~\\@£")), max_size=700)
any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("abc €[]{}\\")),
        st.sampled_from([CURLY, EMOJI, "é", "ç", "\U0001f44d", "中"]),
    ),
    max_size=400,
)


@given(st.one_of(gsm_heavy, any_text))
def test_parts_rebuild_the_text_and_respect_part_sizes(text):
    m = measure(text)
    parts = split_parts(text)
    assert "".join(parts) == text
    assert len(parts) == m.segments
    assert m.units == sum(char_units(c, m.encoding) for c in text)
    limit = (
        {GSM7: 160, UCS2: 70}[m.encoding] if m.segments == 1 else {GSM7: 153, UCS2: 67}[m.encoding]
    )
    for part in parts:
        assert sum(char_units(c, m.encoding) for c in part) <= limit
    # A part is never cut where the next character would still have fitted.
    for part, following in itertools.pairwise(parts):
        used = sum(char_units(c, m.encoding) for c in part)
        assert used + char_units(following[0], m.encoding) > limit


# --------------------------------------------------------------- suggestion


def test_suggestion_replaces_look_alikes_and_shows_segments_saved():
    text = "We\u2019re open \u201ctill 9\u201d \u2013 see you\u2026" + A * 110  # 140 UCS-2
    suggestion = suggest_gsm_replacements(text)
    assert suggestion.text == 'We\'re open "till 9" - see you...' + A * 110  # 142 GSM-7
    assert [(r.char, r.replacement) for r in suggestion.replacements] == [
        ("\u2019", "'"),
        ("\u201c", '"'),
        ("\u201d", '"'),
        ("\u2013", "-"),
        ("\u2026", "..."),
    ]
    assert (suggestion.before.encoding, suggestion.after.encoding) == (UCS2, GSM7)
    assert (suggestion.segments_before, suggestion.segments_after) == (3, 1)
    assert suggestion.segments_saved == 2


def test_suggestion_is_only_a_proposal():
    text = "Caf\u00e1\u00a0open"
    suggestion = suggest_gsm_replacements(text)
    assert suggestion.original == text  # nothing applied to the caller's text
    assert suggestion.text == "Cafa open"
    assert suggestion.changed


def test_suggestion_keeps_what_has_no_gsm_equivalent():
    suggestion = suggest_gsm_replacements(f"Thanks{CURLY} {EMOJI}")
    assert suggestion.text == f"Thanks' {EMOJI}"
    assert suggestion.kept == [(8, EMOJI)]
    assert suggestion.after.encoding == UCS2


def test_suggestion_removes_invisible_characters():
    suggestion = suggest_gsm_replacements("a\u200bb\u00adc")
    assert suggestion.text == "abc"
    assert suggestion.after.encoding == GSM7


def test_suggestion_for_gsm_text_changes_nothing():
    suggestion = suggest_gsm_replacements("Plain [text] €")
    assert not suggestion.changed
    assert suggestion.replacements == []
    assert suggestion.segments_saved == 0
