"""Runtime configuration, read from the environment with the LEARNDIR_ prefix."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import PositiveFloat, PositiveInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNDIR_", extra="ignore")

    database_url: str = "sqlite:///learndir.db"
    # Largest request body accepted, in bytes; larger bodies get 413 before parsing.
    max_body_bytes: int = 1_048_576
    # Largest import file accepted by POST /import (CSV or XLSX), in bytes.
    max_import_bytes: int = 200 * 1_048_576
    # Finished import jobs (their status, plan and error report) are kept this many days.
    import_retention_days: int = 30
    token_lifetime_seconds: int = 1800
    log_level: str = "INFO"
    # Requests one server process runs at once in its thread pool (database calls on
    # PostgreSQL, password hashing); the PostgreSQL pool keeps as many connections open.
    threads: int = 16
    # How often the worker carries out scheduled deactivations and terminations (also once at
    # start); 0 or less leaves them to other processes.
    scheduler_interval_seconds: float = 30.0

    # Slow and idle clients (see api/connections.py). The request headers must arrive within
    # header_timeout_seconds of the connection's start (or of the request's first byte on a
    # reused connection), the whole body within body_timeout_seconds of the headers (408
    # otherwise); a connection idle between requests is closed after keepalive_timeout_seconds
    # (whole seconds, uvicorn's own timeout). A server process holds at most max_connections
    # open connections (its open-file limit is raised to fit); more are answered 503 at once.
    header_timeout_seconds: PositiveFloat = 10.0
    body_timeout_seconds: PositiveFloat = 60.0
    keepalive_timeout_seconds: PositiveInt = 5
    max_connections: PositiveInt = 4096
    # Behind a reverse proxy: the proxies whose X-Forwarded-For and X-Forwarded-Proto are
    # believed (comma-separated addresses or networks, "*" for any). The client address they
    # give is the one sign-in throttling and the audit trail see.
    forwarded_allow_ips: str = "127.0.0.1,::1"

    # The background worker (outbox delivery, scheduled changes) runs inside `learndir serve`
    # unless this is false (then run `learndir worker` somewhere).
    worker_enabled: bool = True
    # How long an idle worker sleeps before looking for due messages again; after each idle
    # round twice as long, up to worker_idle_poll_seconds (work, or a message this process
    # queued, brings it back at once).
    worker_poll_seconds: float = 0.2
    worker_idle_poll_seconds: float = 1.0
    # Messages claimed at once, and sent side by side by this many threads (one SMTP connection
    # each).
    worker_batch_size: int = 200
    worker_senders: int = 4
    # A claim's lease: longer than a batch can take to send; a crashed worker's messages are
    # sent by another once it runs out.
    worker_lease_seconds: float = 60.0

    # The audit trail keeps records this many days (0: forever); the worker deletes older ones
    # once an hour.
    audit_retention_days: int = 365

    # The admin console (/console): a session ends after this many minutes without a request,
    # and in any case this many hours after sign-in.
    console_idle_minutes: PositiveFloat = 30.0
    console_max_hours: PositiveFloat = 12.0

    # Sign-in throttling (core.signin): a login or API client is locked at its
    # signin_login_threshold-th failure in a row, a client address at its
    # signin_address_threshold-th; first for signin_lock_seconds, then twice as long at each
    # further failure, up to signin_max_lock_seconds. Counts start again after
    # signin_window_seconds without a failure or a lock.
    signin_login_threshold: PositiveInt = 5
    signin_address_threshold: PositiveInt = 50
    signin_lock_seconds: PositiveFloat = 60.0
    signin_max_lock_seconds: PositiveFloat = 3600.0
    signin_window_seconds: PositiveFloat = 900.0

    # Where links in messages point (the set-password page): the address users reach.
    public_url: str = "http://127.0.0.1:8080"
    # E-mail over SMTP. Without a host, messages wait in the outbox and say why.
    smtp_host: str | None = None
    # Default: 465 for tls, 587 for starttls, 25 for none.
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # none | starttls | tls. Default: tls on port 465, starttls on 587, none otherwise.
    smtp_security: Literal["none", "starttls", "tls"] | None = None
    mail_from: str = "learndir@localhost"
    # SMS through a Twilio-compatible API: POST {sms_url}/2010-04-01/Accounts/{sid}/Messages.json
    sms_url: str | None = None
    sms_account_sid: str | None = None
    sms_auth_token: SecretStr | None = None
    sms_from: str | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
