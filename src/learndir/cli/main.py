"""The `learndir` command: set up accounts, issue API keys, run the server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
import yaml

from learndir.cli import api_keys, exports, imports, scim_tokens, signin
from learndir.cli.common import EXIT_CODES, DatabaseUrl, JsonFlag, print_table
from learndir.cli.common import database_url as _database_url
from learndir.cli.common import fail as _fail
from learndir.cli.common import open_database as _open
from learndir.cli.common import when_text as _when
from learndir.core.errors import DomainError, ErrorCode

if TYPE_CHECKING:
    from learndir.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="learndir: a self-hosted user directory speaking the iSpring Learn API.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
outbox_app = typer.Typer(no_args_is_help=True, help="Invitation messages waiting or sent.")
app.add_typer(api_keys.app, name="api-key")
app.add_typer(scim_tokens.app, name="scim-token")
webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook subscribers and their backlog.")
app.add_typer(db_app, name="db")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(outbox_app, name="outbox")
app.add_typer(signin.app, name="signin")
exports.register(app)
imports.register(app)


def _load_spec(path: Path) -> Any:
    from learndir.core.accounts import AccountSpec
    from learndir.core.text import check_texts

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except yaml.YAMLError as exc:
        typer.echo(f"error: {path} is not valid YAML: {exc}", err=True)
        raise typer.Exit(2) from None
    # The input rule for text (core.text) holds for an account file as for a request.
    check_texts(data)
    return AccountSpec.parse(data)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the schema to the newest revision."""
    from learndir.db.migrate import upgrade_database

    upgrade_database(_database_url(database_url))
    typer.echo("schema is up to date")


@app.command()
def init(
    account_file: Annotated[Path, typer.Option("--account-file", help="Account YAML file.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create the schema if needed and the account described in ACCOUNT_FILE."""
    from learndir.core.accounts import create_account

    db = _open(_database_url(database_url))
    try:
        created = create_account(db, _load_spec(account_file))
    except DomainError as exc:
        _fail(exc)
    finally:
        db.dispose()
    result = {
        "accountId": created.account_id,
        "accountUrl": created.account_url,
        "rootDepartmentId": created.root_department_id,
        "ownerUserId": created.owner_user_id,
        "clientId": created.client_id,
        "clientSecret": created.client_secret,
    }
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"Account {created.account_url} created.")
        for key, value in result.items():
            typer.echo(f"  {key}: {value}")


@webhooks_app.command("list")
def webhooks_list(database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Every webhook subscriber with its pending and failed deliveries."""
    from learndir.core.webhooks import all_subscribers

    db = _open(_database_url(database_url))
    try:
        rows = all_subscribers(db)
    finally:
        db.dispose()
    listed = [
        {
            "accountUrl": r.account_url,
            "subscriberName": r.info.name,
            "callbackUrl": r.info.callback_url,
            "confirmed": r.info.confirmed,
            "enabled": r.info.enabled,
            "pending": r.info.pending,
            "failed": r.info.failed,
            "failingSince": r.info.failing_since.isoformat() if r.info.failing_since else None,
            "lastError": r.info.last_error,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(listed))
        return
    for item in listed:
        state = "confirmed" if item["confirmed"] else "unconfirmed"
        state += "" if item["enabled"] else ", disabled"
        line = (
            f"{item['accountUrl']}  {item['subscriberName']}  {item['callbackUrl']}  ({state})  "
            f"pending={item['pending']} failed={item['failed']}"
        )
        if item["lastError"]:
            line += f"  last error: {item['lastError']}"
        typer.echo(line)


@webhooks_app.command("replay")
def webhooks_replay(
    subscriber_name: Annotated[str, typer.Argument(help="The subscriber's name.")],
    account_url: Annotated[str, typer.Option("--account-url")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only deliveries queued at or after this ISO 8601 time."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Queue the subscriber's failed deliveries again, in their original order."""
    from learndir.core.webhooks import parse_since, replay_by_account_url

    db = _open(_database_url(database_url))
    try:
        count = replay_by_account_url(db, account_url, subscriber_name, parse_since(since))
    except DomainError as exc:
        _fail(exc)
    finally:
        db.dispose()
    typer.echo(f"replayed: {count}")


def default_workers() -> int:
    """One server process per core this process may run on: a request's database calls run in
    its process (see api/execution.py), so one process per core keeps every core busy
    (measured on 2 cores: docs/benchmarks.md)."""
    return max(1, len(os.sched_getaffinity(0)))


def _log_config() -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": os.environ.get("LEARNDIR_LOG_LEVEL", "INFO")},
        "loggers": {"uvicorn.access": {"level": "WARNING"}},
    }


def server_options(settings: Settings, host: str, port: int, workers: int) -> dict[str, Any]:
    """uvicorn's settings for `learndir serve`."""
    from learndir.api.connections import GuardedHttpProtocol

    return {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_config": _log_config(),
        "access_log": False,
        "timeout_graceful_shutdown": 5,
        # asyncio's own event loop, not uvloop: uvloop (its libuv) accepts one new connection
        # per turn of the loop, and a busy loop's turn serves every connection with a request
        # waiting (30-40 ms at 32 clients), so the 32nd of a burst of new connections waited
        # 0.6 s for its first answer (wrk at 32 clients: p99 209-229 ms and max 630-650 ms
        # with one process, against p99 51 ms and max 61-64 ms on asyncio, at the same
        # users/s). asyncio accepts every waiting connection at once. See docs/benchmarks.md.
        "loop": "asyncio",
        # Header and body read timeouts and the connection cap (api/connections.py); uvicorn's
        # own limit_concurrency is left off: it refuses only once a request's headers are in.
        "http": GuardedHttpProtocol,
        "timeout_keep_alive": settings.keepalive_timeout_seconds,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }


def _run_server(url: str, host: str, port: int, workers: int) -> None:
    import uvicorn

    from learndir.api.connections import fit_open_files
    from learndir.db.migrate import upgrade_database
    from learndir.settings import Settings

    upgrade_database(url)
    # Worker processes build their own app (and connection limits) from the environment.
    os.environ["LEARNDIR_DATABASE_URL"] = url
    settings = Settings(database_url=url)
    # Here, so that a too-low open-file limit is reported at start; worker processes inherit it.
    fit_open_files(settings.max_connections)
    options = server_options(settings, host, port, workers)
    if workers == 1:
        uvicorn.run("learndir.api.app:create_app", **options)
        return
    # A listening socket per process, so that connections spread over the processes.
    from learndir.api.listening import run_processes

    run_processes(uvicorn.Config("learndir.api.app:create_app", **options))


@app.command()
def serve(
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Server processes; default one per CPU core."),
    ] = None,
) -> None:
    """Serve the SOAP and REST APIs."""
    _run_server(_database_url(database_url), host, port, workers or default_workers())


@app.command()
def worker(database_url: DatabaseUrl = None) -> None:
    """Deliver invitations (SMTP, SMS) and carry out scheduled changes, without serving the API.
    SIGTERM or Ctrl+C stops it after the batch in hand is marked."""
    import logging.config
    import signal

    from learndir.delivery.worker import Worker
    from learndir.settings import Settings

    logging.config.dictConfig(_log_config())
    url = _database_url(database_url)
    db = _open(url)
    background = Worker.for_settings(db, Settings(database_url=url))

    def stop(_signum: int, _frame: object) -> None:
        background.stop_soon()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        background.run()
    finally:
        db.dispose()


OutboxStatus = Annotated[
    str | None,
    typer.Option("--status", help="pending, sending, sent, failed or revoked; default all."),
]


@outbox_app.command("list")
def outbox_list(
    status: OutboxStatus = None,
    database_url: DatabaseUrl = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Invitation messages, newest first (never their links)."""
    from learndir.delivery.outbox import STATUSES, list_messages

    if status is not None and status not in STATUSES:
        typer.echo(f"error: --status must be one of {', '.join(STATUSES)}", err=True)
        raise typer.Exit(2)
    db = _open(_database_url(database_url))
    try:
        entries = list_messages(db, status, limit)
    finally:
        db.dispose()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": e.id,
                        "channel": e.channel,
                        "recipient": e.recipient,
                        "status": e.status,
                        "attempts": e.attempts,
                        "lastError": e.last_error,
                        "createdAt": e.created_at.isoformat(),
                        "sentAt": e.sent_at.isoformat() if e.sent_at else None,
                        "nextAttemptAt": e.next_attempt_at.isoformat(),
                    }
                    for e in entries
                ]
            )
        )
        return
    header = ("id", "channel", "recipient", "status", "attempts", "created", "sent", "last error")
    rows = [
        (
            e.id,
            e.channel,
            e.recipient,
            e.status,
            str(e.attempts),
            _when(e.created_at),
            _when(e.sent_at),
            (e.last_error or "-").replace("\n", " ")[:80],
        )
        for e in entries
    ]
    print_table(header, rows)


@outbox_app.command("retry")
def outbox_retry(
    message_id: Annotated[str, typer.Argument(metavar="ID", help="The message's id.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Send a failed (or waiting) message now, with a fresh day of retries."""
    from learndir.delivery.outbox import RetryRefused, retry_message

    db = _open(_database_url(database_url))
    try:
        retry_message(db, message_id)
    except LookupError:
        typer.echo(f"error: no message {message_id} in the outbox", err=True)
        raise typer.Exit(EXIT_CODES[ErrorCode.NOT_FOUND]) from None
    except RetryRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"message {message_id} queued for sending")


@app.command()
def audit(
    account_url: Annotated[str, typer.Option("--account-url", help="The account's URL.")],
    user: Annotated[
        str | None, typer.Option("--user", help="Only changes made by this user id.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Only changes to this target id.")
    ] = None,
    operation: Annotated[
        str | None, typer.Option("--operation", help="Only this operation, e.g. USER_UPDATED.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """The account's audit trail, newest first: who changed what, when, from where."""
    from learndir.api.ispring_rest.audit import audit_view
    from learndir.core.audit import audit_query, read_audit_by_account_url

    db = _open(_database_url(database_url))
    try:
        query = audit_query(user, target, operation, since, until, page_size=limit)
        records, _ = read_audit_by_account_url(db, account_url, query)
    except DomainError as exc:
        _fail(exc)
    finally:
        db.dispose()
    views = [audit_view(r) for r in records]
    if as_json:
        typer.echo(json.dumps(views, ensure_ascii=False))
        return
    header = ("time", "operation", "target", "by", "via", "changes")
    print_table(
        header,
        [
            (
                v["time"],
                v["operation"],
                f"{v['targetType']} {v['targetId']}",
                v["login"] or v["userId"] or "-",
                " ".join(p for p in (v["interface"], v["clientAddress"]) if p),
                ", ".join(c["field"] for c in v["changes"])[:80] or "-",
            )
            for v in views
        ],
    )


@app.command()
def demo(
    account_file: Annotated[Path, typer.Option("--account-file")] = Path("examples/demo.yaml"),
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
) -> None:
    """Set up the demo account (once), print how to call the API with a fresh key, and serve."""
    from learndir.core.accounts import create_account, find_account
    from learndir.core.auth import create_api_key

    url = database_url or os.environ.get("LEARNDIR_DATABASE_URL") or "sqlite:///learndir-demo.db"
    spec = _load_spec(account_file)
    db = _open(url)
    try:
        try:
            created = create_account(db, spec)
            client_id, secret = created.client_id, created.client_secret
        except DomainError as exc:
            if exc.code is not ErrorCode.ACCOUNT_EXISTS:
                _fail(exc)
            key = create_api_key(db, spec.url, spec.owner.login)
            client_id, secret = key.client_id, key.client_secret
        summary = find_account(db, spec.url)
        assert summary is not None
    finally:
        db.dispose()
    base = f"http://{host}:{port}"
    owner = spec.owner
    typer.echo(
        _DEMO_TEXT.format(
            base=base,
            account_url=spec.url,
            client_id=client_id,
            secret=secret,
            root=summary.root_department_id,
            login=owner.login,
            password=owner.password or "<owner password>",
            db=url,
            account_quoted=quote(spec.url, safe=""),
            others=_demo_signins(spec),
        )
    )
    sys.stdout.flush()
    _run_server(url, host, port, 1)


def _demo_signins(spec: Any) -> str:
    """The demo's other users who can sign in, as "login / password (role)" lines."""
    lines = [
        f"\n   or login {user.login}, password {user.password} ({user.role.replace('_', ' ')})"
        for user in spec.users
        if getattr(user, "password", None) and getattr(user, "role", None)
    ]
    return "".join(lines)


_DEMO_TEXT = """
learndir demo account {account_url} (database {db})

Open the console in a browser: {base}/console/sign-in?account={account_quoted}
   account URL {account_url}, login {login}, password {password}{others}

1. Get a token (valid 30 minutes) into $TOKEN:
   TOKEN=$(curl -s -X POST {base}/api/v3/token \\
     -d client_id={client_id} -d client_secret={secret} -d grant_type=client_credentials \\
     | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')

2. Add a user over REST (JSON; drop the Accept header for XML):
   curl -s -X POST {base}/user -H "Authorization: Bearer $TOKEN" \\
     -H "Content-Type: application/json" -H "Accept: application/json" \\
     -d '{{"departmentId": "{root}", "fields": {{"login": "jane", "email": "jane@example.com"}}}}'

   ... or with the account's credentials instead of a token:
   curl -s -X POST {base}/user -H "X-Auth-Account-Url: {account_url}" \\
     -H "X-Auth-Email: {login}" -H "X-Auth-Password: {password}" \\
     -H "Content-Type: application/xml" \\
     -d '<request><departmentId>{root}</departmentId><fields><login>john</login></fields></request>'

3. Add a user over SOAP (WSDL at {base}/soap?wsdl):
   curl -s -X POST {base}/soap -H "Content-Type: text/xml" -d '<?xml version="1.0"?>
   <SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
     xmlns="http://ispringlearn.com/go/services/api/soap"><SOAP-ENV:Body><AddUserRequest>
     <credentials><accountUrl>{account_url}</accountUrl><email>{login}</email>
     <password>{password}</password></credentials>
     <login>kate</login><departmentId>{root}</departmentId><sendLoginEmail>false</sendLoginEmail>
   </AddUserRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>'

4. Look things up: GET {base}/department, {base}/group, {base}/role, {base}/user/profile/fields

5. Provision over SCIM 2.0 as Okta or Entra ID would (base URL {base}/scim/v2):
   SCIM=$(learndir scim-token create --account-url {account_url} --database-url {db} --json \\
     | sed -E 's/.*"token": "([^"]+)".*/\\1/')
   curl -s "{base}/scim/v2/Users?startIndex=1&count=2" -H "Authorization: Bearer $SCIM"

Interactive API documentation: {base}/docs (the OpenAPI document: {base}/openapi.json)

Serving on {base} (Ctrl+C to stop)
"""
