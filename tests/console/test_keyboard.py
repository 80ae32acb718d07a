"""Everything in the console is reachable by keyboard: on each main page, pressing Tab from the
top visits every visible link, button, field and disclosure (radio groups count as one stop, as
browsers make them), and the focused element is always visible."""

from __future__ import annotations

from tests.console.support import ConsolePage
from tests.support import World

PAGES = (
    "/",
    "/people",
    "/people/new",
    "/departments",
    "/groups",
    "/import",
    "/settings",
    "/settings/keys",
    "/settings/audit",
    "/me",
)

# Marks every element Tab can reach, until the focus comes back round to the page.
_MARK_FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  e.setAttribute('data-kbd', '1');
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
}"""

# Visible interactive elements Tab never reached (one radio per group is enough).
_UNREACHED = """() => {
  const seenRadio = new Set();
  document.querySelectorAll('input[type=radio][data-kbd]').forEach(r => seenRadio.add(r.name));
  const all = document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary');
  return Array.from(all).filter(e => {
    if (e.disabled || e.closest('[inert]') || e.getAttribute('tabindex') === '-1') return false;
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    if (e.type === 'radio') return !seenRadio.has(e.name);
    return !e.hasAttribute('data-kbd');
  }).map(e => e.outerHTML.slice(0, 120));
}"""


def test_every_control_is_reachable_by_keyboard(console: ConsolePage, demo_world: World) -> None:
    console.sign_in(demo_world, "owner")
    page = console.page
    for path in PAGES:
        console.goto(path)
        controls = page.locator(
            "a[href], button, input:not([type=hidden]), select, textarea, summary"
        ).count()
        for _ in range(controls + 3):
            page.keyboard.press("Tab")
            visible = page.evaluate(_MARK_FOCUSED)
            assert visible is not False, f"{path}: the focused element is not visible"
        assert page.evaluate(_UNREACHED) == [], path
