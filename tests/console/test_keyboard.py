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

# Marks every element Tab can reach, until the focus comes back round to the first one
# (a date field takes several presses: one per part of the date).
_MARK_FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return 'none';
  if (e.hasAttribute('data-kbd-first')) return 'again';
  if (!document.querySelector('[data-kbd-first]')) e.setAttribute('data-kbd-first', '1');
  e.setAttribute('data-kbd', '1');
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 ? 'new' : 'invisible';
}"""

# Visible interactive elements Tab never reached (one radio per group is enough).
_UNREACHED = """() => {
  const seenRadio = new Set();
  document.querySelectorAll('input[type=radio][data-kbd]').forEach(r => seenRadio.add(r.name));
  const all = document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary');
  return Array.from(all).filter(e => {
    if (e.disabled || e.closest('[inert]') || e.getAttribute('tabindex') === '-1') return false;
    // Not rendered (a closed <details>, display: none): not a stop until it is shown.
    if (!e.checkVisibility({checkVisibilityCSS: true})) return false;
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
        # Round the page once: until the focus comes back to where it has been.
        for _ in range(2 * controls + 10):
            page.keyboard.press("Tab")
            state = page.evaluate(_MARK_FOCUSED)
            assert state != "invisible", f"{path}: the focused element is not visible"
            if state == "again":
                break
        assert page.evaluate(_UNREACHED) == [], path
