"""What the SCIM service publishes about itself (RFC 7643 §5-7): the service provider
configuration, the resource types and the schemas, and the schema trees the rest of the SCIM
core reads documents with.

The core User, Enterprise User and Group schemas are the RFC's own, as scim2-models (the
python-scim project) describes them, so every attribute a provider may send is published and
stored. Each account's custom profile fields are published in an extension of learndir's own;
a field that holds an employee number is the Enterprise User's `employeeNumber` instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pycountry
from scim2_models import (
    EnterpriseUser,
    Group,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    User,
)

from learndir.core.profile_fields import ProfileField
from learndir.core.scim.attributes import ResourceSchema

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LEARNDIR_URN = "urn:learndir:params:scim:schemas:extension:learndir:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
CONFIG_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_URN = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_URN = "urn:ietf:params:scim:schemas:core:2.0:Schema"

# The most resources one answer holds; a larger `count` is lowered to it (RFC 7644 §3.4.2.4).
MAX_RESULTS = 1000

_DATE_EXAMPLES = ("1985-04-12", "1990-01-31", "2001-12-01")
_PHONE_EXAMPLES = ("+1 202 555 0143", "+44 20 7946 0958", "+49 30 1234567")
_ATTRNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_EMPLOYEE_NUMBER_NAMES = frozenset({"employeenumber", "employeeid", "employeeno"})


def _document(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = model.to_schema().model_dump(mode="json", exclude_none=True)
    schema.pop("meta", None)
    return schema


@cache
def _rfc_documents() -> dict[str, dict[str, Any]]:
    documents = {
        urn: _document(model)
        for urn, model in (
            (USER_URN, User),
            (ENTERPRISE_URN, EnterpriseUser),
            (GROUP_URN, Group),
            (CONFIG_URN, ServiceProviderConfig),
            (RESOURCE_TYPE_URN, ResourceType),
            (SCHEMA_URN, Schema),
        )
    }
    for document in documents.values():
        document["schemas"] = [SCHEMA_URN]
    return documents


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


@dataclass(frozen=True)
class UserSchemas:
    """The User resource as one account publishes it: the schema tree, the extension's
    documents, and which custom profile field each extension attribute holds."""

    tree: ResourceSchema
    enterprise_extension: dict[str, Any]
    learndir_extension: dict[str, Any] | None
    # Extension attribute name -> the custom profile field it holds.
    custom: dict[str, ProfileField]
    # The custom field that holds the Enterprise User's employeeNumber, if the account has one.
    employee_number: ProfileField | None
    # Whether the account requires a custom field: then the extension is required.
    extension_required: bool
    # Attributes never returned (the password): what a read leaves out of a stored document.
    never_returned: tuple[str, ...] = ()


def attribute_name(field: ProfileField) -> str:
    """A profile field's name as a SCIM attribute name (RFC 7643 §2.1: ATTRNAME)."""
    if _ATTRNAME.fullmatch(field.name):
        return field.name
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", field.name)
    return cleaned if cleaned[:1].isalpha() else f"field_{cleaned}"


@cache
def _countries() -> tuple[str, ...]:
    return tuple(sorted(str(c.alpha_2) for c in pycountry.countries))


def _field_attribute(field: ProfileField) -> dict[str, Any]:
    description = field.label
    attribute: dict[str, Any] = {
        "name": attribute_name(field),
        "type": "string",
        "multiValued": False,
        "required": field.is_required,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "server" if field.is_unique else "none",
    }
    if field.type == "country":
        description += " (an ISO 3166 country code)"
        attribute["canonicalValues"] = list(_countries())
    elif field.type == "birthdate":
        # learndir checks these values; the suggestions (RFC 7643 §7: canonicalValues are
        # suggested values) show the form it accepts, to people and to conformance checkers.
        description += " (a date, YYYY-MM-DD)"
        attribute["canonicalValues"] = list(_DATE_EXAMPLES)
    elif field.type == "phone":
        description += " (a phone number: digits, spaces, ()-. and a leading +)"
        attribute["canonicalValues"] = list(_PHONE_EXAMPLES)
    attribute["description"] = description
    return attribute


def user_schemas(fields: Sequence[ProfileField]) -> UserSchemas:
    """The User resource's schemas for an account with these profile fields (cached per
    field list: an account's fields are one tuple per settings version)."""
    return _user_schemas(tuple(fields))


@cache
def _user_schemas(fields: tuple[ProfileField, ...]) -> UserSchemas:
    documents = _rfc_documents()
    custom_fields = [f for f in fields if not f.is_builtin]
    employee_number = next(
        (
            f
            for f in custom_fields
            if f.type == "string" and {_compact(f.name), _compact(f.label)} & _EMPLOYEE_NUMBER_NAMES
        ),
        None,
    )
    enterprise = documents[ENTERPRISE_URN]
    if employee_number is not None and employee_number.is_required:
        enterprise = {
            **enterprise,
            "attributes": [
                {**a, "required": True} if a["name"] == "employeeNumber" else a
                for a in enterprise["attributes"]
            ],
        }
    custom = {attribute_name(f): f for f in custom_fields if f is not employee_number}
    extension: dict[str, Any] | None = None
    if custom:
        extension = {
            "schemas": [SCHEMA_URN],
            "id": LEARNDIR_URN,
            "name": "LearndirUser",
            "description": "The account's custom profile fields",
            "attributes": [_field_attribute(f) for f in custom.values()],
        }
    extensions = [enterprise] + ([extension] if extension else [])
    tree = ResourceSchema.from_documents(documents[USER_URN], extensions)
    return UserSchemas(
        tree=tree,
        enterprise_extension=enterprise,
        learndir_extension=extension,
        custom=custom,
        employee_number=employee_number,
        extension_required=any(f.is_required for f in custom.values()),
        never_returned=tuple(
            a.name for a in tree.attributes(None).values() if a.returned == "never"
        ),
    )


@cache
def group_schema() -> ResourceSchema:
    return ResourceSchema.from_documents(_rfc_documents()[GROUP_URN], [])


def _with_meta(document: dict[str, Any], kind: str, location: str) -> dict[str, Any]:
    return {**document, "meta": {"resourceType": kind, "location": location}}


def schema_documents(schemas: UserSchemas, base_url: str) -> list[dict[str, Any]]:
    """Every schema /Schemas lists, in a stable order, with its location."""
    documents = _rfc_documents()
    listed = [documents[USER_URN], schemas.enterprise_extension]
    if schemas.learndir_extension is not None:
        listed.append(schemas.learndir_extension)
    listed += [documents[GROUP_URN], documents[CONFIG_URN], documents[RESOURCE_TYPE_URN]]
    listed.append(documents[SCHEMA_URN])
    return [_with_meta(d, "Schema", f"{base_url}/Schemas/{d['id']}") for d in listed]


def resource_types(schemas: UserSchemas, base_url: str) -> list[dict[str, Any]]:
    # An extension holding a field the account requires is itself required.
    number = schemas.employee_number
    extensions = [{"schema": ENTERPRISE_URN, "required": number is not None and number.is_required}]
    if schemas.learndir_extension is not None:
        extensions.append({"schema": LEARNDIR_URN, "required": schemas.extension_required})
    user = {
        "schemas": [RESOURCE_TYPE_URN],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person of the directory",
        "schema": USER_URN,
        "schemaExtensions": extensions,
    }
    group = {
        "schemas": [RESOURCE_TYPE_URN],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A group of users; smart groups are read-only",
        "schema": GROUP_URN,
    }
    return [
        _with_meta(r, "ResourceType", f"{base_url}/ResourceTypes/{r['id']}") for r in (user, group)
    ]


def service_provider_config(base_url: str) -> dict[str, Any]:
    return {
        "schemas": [CONFIG_URN],
        "documentationUri": "https://github.com/learndir/learndir#scim-20",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": True},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "SCIM token",
                "description": "A token made by `learndir scim-token create`, sent as "
                "Authorization: Bearer <token>",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base_url}/ServiceProviderConfig",
        },
    }
