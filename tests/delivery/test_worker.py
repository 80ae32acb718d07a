"""The worker loop itself: jobs, back-off of a failing job, stop."""

from __future__ import annotations

import math
import time

from learndir.db.engine import Database
from learndir.delivery.worker import Worker, every
from tests.delivery.conftest import wait_until


def test_a_failing_job_backs_off_while_the_others_go_on(ddb: Database) -> None:
    calls = {"failing": 0, "working": 0, "timed": 0}

    def failing(_db: Database, _worker_id: str) -> int:
        calls["failing"] += 1
        raise RuntimeError("the provider is away")

    def working(_db: Database, _worker_id: str) -> int:
        calls["working"] += 1
        return 0

    def timed(_db: Database, _worker_id: str) -> int:
        calls["timed"] += 1
        return 1

    worker = Worker(
        ddb,
        [failing, working, every(3600, timed, "timed")],
        poll_interval=0.01,
        idle_poll_interval=0.01,
    )
    started = time.monotonic()
    worker.start()
    try:
        wait_until(lambda: calls["working"] >= 100, what="the working job to run on")
    finally:
        worker.stop()
    elapsed = time.monotonic() - started
    # Tried at once, then after 1 s, 2 s, 4 s...: far fewer times than the working job runs.
    assert 1 <= calls["failing"] <= 2 + math.log2(1 + elapsed)
    # The hourly job once, at start.
    assert calls["timed"] == 1


def test_an_idle_worker_looks_less_often_until_woken(ddb: Database) -> None:
    rounds: list[float] = []

    def idle(_db: Database, _worker_id: str) -> int:
        rounds.append(time.monotonic())
        return 0

    worker = Worker(ddb, [idle], poll_interval=0.01, idle_poll_interval=0.16)
    worker.start()
    try:
        wait_until(lambda: len(rounds) >= 8, what="eight idle rounds")
        # 0.01, 0.02, 0.04, 0.08, then 0.16 s between rounds: the sleep grows to the ceiling
        # (a lower bound: a loaded machine only makes the gaps longer).
        assert rounds[7] - rounds[6] >= 0.15
        seen = len(rounds)
        worker.wake()
        wait_until(lambda: len(rounds) > seen, what="the round a wake-up brings")
    finally:
        worker.stop()
