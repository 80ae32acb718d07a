"""The console's first page: the account at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from learndir.api.console.web import Console, current
from learndir.core.overview import account_overview
from learndir.delivery.outbox import backlog, webhook_backlog

router = APIRouter()


@router.get("/", include_in_schema=False)
def overview(console: Console = Depends(current)) -> Response:
    if console.actor.is_learner_only:
        return console.redirect("/me")
    summary = account_overview(console.db, console.actor)
    delivery = None
    if console.actor.administers_account:
        with console.db.read() as conn:
            delivery = {"outbox": backlog(conn), "webhooks": webhook_backlog(conn)}
    return console.render(
        "overview.html",
        {"overview": summary, "delivery": delivery},
        section="overview",
        title="Overview",
    )
