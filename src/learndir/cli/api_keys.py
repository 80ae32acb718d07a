"""`learndir api-key create|list|revoke`: API keys from the command line, without an acting user
(the audit trail records the command line as the interface). Secrets are shown once, at
creation."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from learndir.cli.common import (
    DatabaseUrl,
    JsonFlag,
    database_url,
    fail,
    iso_or_none,
    open_database,
    print_table,
    when_text,
)
from learndir.core.errors import DomainError

app = typer.Typer(no_args_is_help=True, help="Manage API keys (client id + secret).")


@app.command("create")
def create(
    account_url: Annotated[str, typer.Option("--account-url")],
    login: Annotated[str, typer.Option("--login", help="Login or e-mail of the key's user.")],
    database: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key that acts with the rights of user LOGIN."""
    from learndir.core.auth import create_api_key

    db = open_database(database_url(database))
    try:
        key = create_api_key(db, account_url, login)
    except DomainError as exc:
        fail(exc)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps({"clientId": key.client_id, "clientSecret": key.client_secret}))
    else:
        typer.echo(f"clientId: {key.client_id}\nclientSecret: {key.client_secret}")


@app.command("list")
def list_keys(
    account_url: Annotated[
        str | None, typer.Option("--account-url", help="Only this account's keys.")
    ] = None,
    database: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Every API key (never a secret): client id, its user's login, created, last used, revoked."""
    from learndir.core.api_keys import all_keys

    db = open_database(database_url(database))
    try:
        keys = all_keys(db, account_url)
    finally:
        db.dispose()
    if as_json:
        listed = [
            {
                "clientId": k.client_id,
                "accountUrl": k.account_url,
                "userId": k.user_id,
                "login": k.login,
                "createdAt": iso_or_none(k.created_at),
                "lastUsedAt": iso_or_none(k.last_used_at),
                "revokedAt": iso_or_none(k.revoked_at),
            }
            for k in keys
        ]
        typer.echo(json.dumps(listed))
        return
    header = ("client id", "account", "login", "created", "last used", "revoked")
    rows = [
        (
            k.client_id,
            k.account_url,
            k.login,
            when_text(k.created_at),
            when_text(k.last_used_at),
            when_text(k.revoked_at),
        )
        for k in keys
    ]
    print_table(header, rows)


@app.command("revoke")
def revoke(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID", help="The key's client id.")],
    database: DatabaseUrl = None,
) -> None:
    """Revoke an API key: it buys no more tokens and its tokens stop working at once."""
    from learndir.core.api_keys import revoke_key_by_id

    db = open_database(database_url(database))
    try:
        key, revoked = revoke_key_by_id(db, client_id)
    except DomainError as exc:
        fail(exc)
    finally:
        db.dispose()
    what = f"API key {key.client_id} of {key.login} ({key.account_url})"
    if revoked:
        typer.echo(f"{what} revoked; its tokens no longer work")
    else:
        typer.echo(f"{what} was already revoked at {when_text(key.revoked_at)} UTC")
