"""`learndir scim-token create|list|revoke`: the bearer tokens identity providers provision
users with over SCIM (/scim/v2). A token acts as the user it is made for; it is shown once, at
creation, and only its hash is kept."""

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

app = typer.Typer(no_args_is_help=True, help="Manage SCIM provisioning tokens.")


@app.command("create")
def create(
    account_url: Annotated[str, typer.Option("--account-url")],
    login: Annotated[
        str | None,
        typer.Option("--login", help="Login or e-mail of the user it acts as; default: the owner."),
    ] = None,
    invite: Annotated[
        bool,
        typer.Option(
            "--invite",
            help="Send the users this token creates (those with an e-mail) the account's "
            "invitation to set a password.",
        ),
    ] = False,
    database: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a SCIM token acting as user LOGIN (their rights and departments apply)."""
    from learndir.core.scim_tokens import create_scim_token

    db = open_database(database_url(database))
    try:
        made = create_scim_token(db, account_url, login, invite=invite)
    except DomainError as exc:
        fail(exc)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps({"tokenId": made.token_id, "token": made.token}))
    else:
        typer.echo(f"tokenId: {made.token_id}\ntoken: {made.token}")
        typer.echo("The token is shown this once; only its hash is kept.", err=True)


@app.command("list")
def list_tokens(
    account_url: Annotated[
        str | None, typer.Option("--account-url", help="Only this account's tokens.")
    ] = None,
    database: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Every SCIM token (never the token): id, its user's login, created, last used, revoked."""
    from learndir.core.scim_tokens import list_scim_tokens

    db = open_database(database_url(database))
    try:
        tokens = list_scim_tokens(db, account_url)
    finally:
        db.dispose()
    if as_json:
        listed = [
            {
                "tokenId": t.token_id,
                "accountUrl": t.account_url,
                "userId": t.user_id,
                "login": t.login,
                "createdAt": iso_or_none(t.created_at),
                "lastUsedAt": iso_or_none(t.last_used_at),
                "revokedAt": iso_or_none(t.revoked_at),
                "invite": t.invite,
            }
            for t in tokens
        ]
        typer.echo(json.dumps(listed))
        return
    header = ("token id", "account", "login", "invites", "created", "last used", "revoked")
    rows = [
        (
            t.token_id,
            t.account_url,
            t.login,
            "yes" if t.invite else "no",
            when_text(t.created_at),
            when_text(t.last_used_at),
            when_text(t.revoked_at),
        )
        for t in tokens
    ]
    print_table(header, rows)


@app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="The token's id.")],
    database: DatabaseUrl = None,
) -> None:
    """Revoke a SCIM token: it is refused at once, on every server."""
    from learndir.core.scim_tokens import revoke_scim_token

    db = open_database(database_url(database))
    try:
        token, revoked = revoke_scim_token(db, token_id)
    except DomainError as exc:
        fail(exc)
    finally:
        db.dispose()
    what = f"SCIM token {token.token_id} of {token.login} ({token.account_url})"
    if revoked:
        typer.echo(f"{what} revoked")
    else:
        typer.echo(f"{what} was already revoked at {when_text(token.revoked_at)} UTC")
