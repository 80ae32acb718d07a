"""Cell values of an import file as people type them."""

from __future__ import annotations

import pytest

from learndir.core.errors import DomainError
from learndir.core.imports.cells import active_cell, list_cell, status_cell


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Active", 1),
        ("  inactive ", 3),
        ("Employment  Ended", 5),
        ("EMPLOYMENT ENDED", 5),
        ("1", 1),
        ("3", 3),
        ("5", 5),
        ("", None),
    ],
)
def test_status(text: str, status: int | None) -> None:
    assert status_cell(text, "Status") == status


@pytest.mark.parametrize("text", ["2", "gone", "Act1ve"])
def test_a_wrong_status_names_its_column(text: str) -> None:
    with pytest.raises(DomainError) as caught:
        status_cell(text, "Status")
    assert caught.value.parameter == "Status"
    assert caught.value.reason == f"{text!r} is not a status: Active, Inactive or Employment Ended"


@pytest.mark.parametrize(
    ("text", "status"), [("Yes", 1), ("no", 3), ("TRUE", 1), ("0", 3), (" ", None)]
)
def test_the_older_active_column(text: str, status: int | None) -> None:
    assert active_cell(text, "Active") == status


def test_a_wrong_active_value() -> None:
    with pytest.raises(DomainError, match="Wrong parameters"):
        active_cell("maybe", "Active")


def test_lists_in_one_cell() -> None:
    assert list_cell("Sales; Support") == ["Sales", "Support"]
    assert list_cell("Sales,Support\nEngineering ;") == ["Sales", "Support", "Engineering"]
    assert list_cell("  ") == []
