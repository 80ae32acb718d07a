"""Argon2id password hashing with at least OWASP's parameters (19 MiB, t=2, p=1)."""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """A hash of a random, forgotten password, made once per process with the real parameters:
    a sign-in for an unknown user is verified against it, so it costs what a wrong password
    costs and its timing tells nothing."""
    return hash_password(secrets.token_urlsafe(32))
