"""The input rule for text (core/text.py) on the Departments and Groups forms: a value with a
NUL, another control character or a lone surrogate is Wrong parameters naming its field, and
what the form shows back has those characters replaced (a lone surrogate cannot even be
written into the page)."""

from __future__ import annotations

from starlette.datastructures import FormData

from learndir.core.text import check_name, check_text, without_forbidden

# The fields these forms show errors next to; an error in any other is the form's own ("").
SHOWN_FIELDS = frozenset({"name", "code", "parent", "members"})


def check_form(form: FormData) -> None:
    """Wrong parameters naming the first field whose name or value breaks the rule."""
    for name, value in form.multi_items():
        check_name(name, "")
        if isinstance(value, str):
            check_text(value, name if name in SHOWN_FIELDS else "")


# A value as a page may show it back.
shown = without_forbidden
