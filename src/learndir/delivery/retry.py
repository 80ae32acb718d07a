"""When a failed delivery is tried again, and when it is given up.

Exponential backoff with full jitter: the first retry comes within 30 s of the failure, each
later one waits up to twice as long, capped at an hour, for 24 hours from the first attempt.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

FIRST_RETRY_SECONDS = 30.0
MAX_DELAY_SECONDS = 3600.0
GIVE_UP_AFTER = timedelta(hours=24)


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1 for the first failure)."""
    ceiling = min(MAX_DELAY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))
    # Jitter spreads the retries of many messages that failed together; never below a second.
    return max(1.0, (rng or random).uniform(ceiling / 2, ceiling))


def next_attempt(first_attempt: datetime, attempts: int, now: datetime) -> datetime | None:
    """When to try again after `attempts` failures, or None once the 24 hours are over."""
    if now - first_attempt >= GIVE_UP_AFTER:
        return None
    return now + timedelta(seconds=retry_delay(attempts))
