import pytest

from smsoffice.csvsafe import safe_cell, safe_row


@pytest.mark.parametrize(
    "raw", ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\r=1", "\uff1d1+1"]
)
def test_formula_cells_are_neutralised(raw):
    assert safe_cell(raw) == "'" + raw


@pytest.mark.parametrize("raw", ["Alice", "", "0412 300 100", 5, None, 2.5])
def test_plain_values_unchanged(raw):
    assert safe_cell(raw) == raw


def test_row():
    assert safe_row(["a", "=b", 3]) == ["a", "'=b", 3]
