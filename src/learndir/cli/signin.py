"""`learndir signin`: sign-in locks (see core.signin), for the operator: list them, unlock a
login, an API client or a client address."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from learndir.cli.common import DatabaseUrl, JsonFlag, database_url, fail, open_database
from learndir.core.errors import DomainError

app = typer.Typer(no_args_is_help=True, help="Sign-in locks after failed sign-ins.")


@app.command("locks")
def locks(
    account_url: Annotated[
        str | None, typer.Option("--account-url", help="Only this account's logins.")
    ] = None,
    database: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Every lock now in force: logins, API clients and client addresses."""
    from learndir.core.auth import account_url_key
    from learndir.core.signin import all_locks

    db = open_database(database_url(database))
    try:
        found = all_locks(db, account_url_key(account_url) if account_url else None)
    except DomainError as exc:
        fail(exc)
    finally:
        db.dispose()
    listed = [
        {
            "scope": lock.scope.value,
            "subject": lock.subject,
            "failures": lock.failures,
            "lastFailedAt": lock.last_failed_at.isoformat(),
            "lockedUntil": lock.locked_until.isoformat() if lock.locked_until else None,
        }
        for lock in found
    ]
    if as_json:
        typer.echo(json.dumps(listed))
        return
    for item in listed:
        typer.echo(
            f"{item['scope']}  {item['subject']}  failures={item['failures']}  "
            f"locked until {item['lockedUntil']}"
        )


@app.command("unlock")
def unlock(
    account_url: Annotated[str | None, typer.Option("--account-url")] = None,
    login: Annotated[
        str | None, typer.Option("--login", help="A login or e-mail of --account-url.")
    ] = None,
    address: Annotated[str | None, typer.Option("--address", help="A client address.")] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="An API key's client id.")
    ] = None,
    database: DatabaseUrl = None,
) -> None:
    """Clear the failures and lock of a login (with --account-url), an address or a client."""
    from learndir.core.auth import account_url_key
    from learndir.core.signin import operator_unlock

    given = [option for option in (login, address, client_id) if option is not None]
    if len(given) != 1:
        typer.echo("error: give one of --login (with --account-url), --address, --client-id")
        raise typer.Exit(2)
    db = open_database(database_url(database))
    try:
        cleared = operator_unlock(
            db,
            account_url_key=account_url_key(account_url) if account_url else None,
            login=login,
            address=address,
            client_id=client_id,
        )
    except DomainError as exc:
        fail(exc)
    finally:
        db.dispose()
    typer.echo(f"unlocked: {cleared}")
