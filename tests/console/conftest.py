"""The console's fixtures (see support.py)."""

from tests.console.support import console, console_site, demo_world  # noqa: F401
