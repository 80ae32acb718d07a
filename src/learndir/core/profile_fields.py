"""User profile fields: the built-in ones and each account's own, and how values are checked."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection, bindparam, insert, select, update

from learndir.core.actor import Actor
from learndir.core.common import fold, new_id
from learndir.core.errors import denied, invalid
from learndir.db.engine import Database
from learndir.db.schema import profile_fields

CUSTOM_TYPES = frozenset({"string", "country", "phone", "birthdate"})
MAX_VALUE_LENGTH = 255

# name, label, type, required, unique
BUILTIN_FIELDS: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("login", "Login", "login", True, True),
    ("email", "Email", "email", False, True),
    ("first_name", "First name", "first_name", False, False),
    ("last_name", "Last name", "last_name", False, False),
    ("job_title", "Job title", "job_title", False, False),
    ("phone", "Phone", "phone", False, False),
)
BUILTIN_NAMES = frozenset(name for name, *_ in BUILTIN_FIELDS)

_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-.]{3,30}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ProfileField:
    id: str
    key: str
    name: str
    label: str
    type: str
    is_builtin: bool
    is_required: bool
    is_unique: bool
    order_priority: int


def create_builtin_fields(conn: Connection, account_id: str) -> None:
    conn.execute(
        insert(profile_fields),
        [
            {
                "id": new_id(),
                "account_id": account_id,
                "field_key": name.upper(),
                "name": name,
                "name_key": name,
                "label": label,
                "type": ftype,
                "is_builtin": True,
                "is_required": required,
                "is_unique": unique,
                "order_priority": i,
            }
            for i, (name, label, ftype, required, unique) in enumerate(BUILTIN_FIELDS)
        ],
    )


def define_field(
    conn: Connection,
    account_id: str,
    name: str,
    label: str | None,
    ftype: str,
    required: bool,
    unique: bool,
    *,
    name_parameter: str | None = None,
    type_parameter: str | None = None,
) -> None:
    """Adds a custom field, or sets the required flag of a built-in one of the same name.
    Errors name `profileFields.<name>` (an account file's entry) unless the caller names the
    parameters its name and type came in."""
    key = fold(name)
    name_parameter = name_parameter or f"profileFields.{name}"
    type_parameter = type_parameter or f"profileFields.{name}"
    existing = {f.name.casefold(): f for f in account_fields(conn, account_id)}
    if key in BUILTIN_NAMES:
        conn.execute(
            update(profile_fields)
            .where(profile_fields.c.id == existing[key].id)
            .values(
                is_required=required or existing[key].is_required,
                label=label or existing[key].label,
            )
        )
        return
    if key in existing:
        raise invalid(name_parameter, "a field of this name is already defined")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", key):
        raise invalid(
            name_parameter, "a field name is a letter then letters, digits or underscores"
        )
    if ftype not in CUSTOM_TYPES:
        raise invalid(
            type_parameter,
            f"unknown type {ftype!r}; use one of {', '.join(sorted(CUSTOM_TYPES))}",
        )
    number = sum(1 for f in existing.values() if not f.is_builtin) + 1
    conn.execute(
        insert(profile_fields).values(
            id=new_id(),
            account_id=account_id,
            field_key=f"USER_DEFINED_FIELD{number}",
            name=name.strip(),
            name_key=key,
            label=label or name,
            type=ftype,
            is_builtin=False,
            is_required=required,
            is_unique=unique,
            order_priority=len(existing),
        )
    )


_SELECT_FIELDS = (
    select(profile_fields)
    .where(profile_fields.c.account_id == bindparam("account_id"))
    .order_by(profile_fields.c.order_priority)
)


def account_fields(conn: Connection, account_id: str) -> list[ProfileField]:
    return [
        ProfileField(
            id=r.id,
            key=r.field_key,
            name=r.name,
            label=r.label,
            type=r.type,
            is_builtin=r.is_builtin,
            is_required=r.is_required,
            is_unique=r.is_unique,
            order_priority=r.order_priority,
        )
        for r in conn.execute(_SELECT_FIELDS, {"account_id": account_id})
    ]


def resolve_field(fields: Sequence[ProfileField], name: str) -> ProfileField | None:
    """Finds a field by its name or its public id, case-insensitively."""
    return _field_index(fields).get(fold(name))


# The last field lists looked up and their index: an account's fields are one cached tuple per
# settings version, so a bulk import resolves a row's columns by dictionary, not by scanning.
_indexes: dict[int, tuple[Sequence[ProfileField], dict[str, ProfileField]]] = {}


def _field_index(fields: Sequence[ProfileField]) -> dict[str, ProfileField]:
    cached = _indexes.get(id(fields))
    if cached is not None and cached[0] is fields:
        return cached[1]
    index: dict[str, ProfileField] = {}
    for field in reversed(fields):
        index[field.key.casefold()] = field
        index[field.name.casefold()] = field
    if len(_indexes) >= 256:
        _indexes.clear()
    _indexes[id(fields)] = (fields, index)
    return index


# The everyday e-mail address (ASCII letters, digits and ._%+- before the @, plain host labels
# after it): what email-validator would accept and normalise by lower-casing the domain, which
# takes it 70 microseconds and this a few. Anything else (quoted or Unicode local parts,
# internationalised or punycode domains, special-use names) takes the full validation.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_WHITE_SPACE = re.compile(r"\s")
_SPECIAL_USE = frozenset({"arpa", "invalid", "local", "localhost", "onion"})


def _plain_email(value: str) -> str | None:
    match = _PLAIN_EMAIL.fullmatch(value)
    if match is None or len(value) > 254 or len(match["local"]) > 64:
        return None
    domain = match["domain"].lower()
    if "--" in domain or domain.rsplit(".", 1)[1] in _SPECIAL_USE:
        return None
    return f"{match['local']}@{domain}"


def normalize_email(value: str, parameter: str = "email") -> str:
    plain = _plain_email(value)
    if plain is not None:
        return plain
    try:
        result = validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise invalid(parameter, f"not a valid e-mail address: {exc}") from None
    return result.normalized


def is_email(value: str) -> bool:
    try:
        validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError:
        return False
    return True


def phone_e164(value: str, parameter: str = "phone") -> str:
    """A phone number in E.164 (`+4930123456`), as SMS gateways take it. Without an account
    region to read national numbers against, a number must carry its country code: a leading
    `+` (or the international prefix `00`)."""
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        raise invalid(
            parameter, "a phone number for SMS needs its country code, such as +49 30 1234567"
        )
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise invalid(parameter, f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_value(field: ProfileField, raw: str, parameter: str) -> str:
    """The value to store for `field`, or a Wrong parameters error naming `parameter`."""
    value = raw.strip()
    if len(value) > MAX_VALUE_LENGTH:
        raise invalid(parameter, f"longer than {MAX_VALUE_LENGTH} characters")
    if _CONTROL.search(value):
        raise invalid(parameter, "contains control characters")
    if field.type == "email":
        return normalize_email(value, parameter) if value else value
    if not value:
        return value
    if field.type == "phone" and not _PHONE.match(value):
        raise invalid(parameter, "not a phone number (digits, spaces, ()-. and a leading +)")
    if field.type == "birthdate":
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise invalid(parameter, "not a date in the form YYYY-MM-DD") from None
    if field.type == "country":
        country = pycountry.countries.get(alpha_2=value.upper()) or pycountry.countries.get(
            alpha_3=value.upper()
        )
        if country is None:
            try:
                country = pycountry.countries.lookup(value)
            except LookupError:
                raise invalid(parameter, "not a country (an ISO 3166 code or name)") from None
        return str(country.alpha_2)
    if field.type == "login" and _WHITE_SPACE.search(value):
        raise invalid(parameter, "a login cannot contain white space")
    return value


def list_fields(db: Database, actor: Actor) -> list[ProfileField]:
    if actor.is_learner_only:
        raise denied("learners cannot list profile fields")
    with db.read() as conn:
        return account_fields(conn, actor.account_id)
