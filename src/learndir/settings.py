"""Runtime configuration, read from the environment with the LEARNDIR_ prefix."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNDIR_", extra="ignore")

    database_url: str = "sqlite:///learndir.db"
    # Largest request body accepted, in bytes; larger bodies get 413 before parsing.
    max_body_bytes: int = 1_048_576
    token_lifetime_seconds: int = 1800
    log_level: str = "INFO"
    # Requests one server process runs at once in its thread pool (database calls on
    # PostgreSQL, password hashing); the PostgreSQL pool keeps as many connections open.
    threads: int = 16
    # How often the service carries out scheduled deactivations and terminations (also once at
    # start); 0 or less turns the scheduler off in this process.
    scheduler_interval_seconds: float = 30.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
