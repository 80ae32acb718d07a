"""The schema tree of a SCIM resource type, and the rules every incoming document goes through:
canonical attribute spelling, type coercion and projection (RFC 7643, RFC 7644 §3.4.2.5)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from learndir.core.errors import DomainError, ErrorCode


@dataclass(frozen=True)
class Attribute:
    """One attribute definition; `sub_attributes` is keyed by casefolded name because clients
    spell names in any case."""

    name: str
    type: str
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: Mapping[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def sub(self, name: str) -> Attribute | None:
        return self.sub_attributes.get(name.casefold())


@dataclass(frozen=True, repr=False)
class AttrRef:
    """A resolved attribute path: `urn` is None for the core schema; an extension object itself
    is an `attribute` of type complex named by its URN."""

    urn: str | None
    attribute: Attribute
    sub_attribute: Attribute | None = None

    @property
    def name(self) -> str:
        return self.attribute.name

    @property
    def sub(self) -> str | None:
        return self.sub_attribute.name if self.sub_attribute else None

    @property
    def is_extension(self) -> bool:
        return self.urn is not None and self.attribute.name == self.urn

    @property
    def target(self) -> Attribute:
        """The attribute the path ends at."""
        return self.sub_attribute or self.attribute

    def __repr__(self) -> str:
        return f"AttrRef({self.text()!r})"

    def text(self) -> str:
        """The path as a client would write it, for error reasons."""
        path = self.name if self.sub is None else f"{self.name}.{self.sub}"
        return path if self.urn is None or self.is_extension else f"{self.urn}:{path}"


def _attribute(raw: Mapping[str, Any]) -> Attribute:
    subs = [_attribute(sub) for sub in raw.get("subAttributes") or ()]
    return Attribute(
        name=raw["name"],
        type=raw.get("type", "string"),
        multi_valued=bool(raw.get("multiValued", False)),
        required=bool(raw.get("required", False)),
        case_exact=bool(raw.get("caseExact", False)),
        mutability=raw.get("mutability", "readWrite"),
        returned=raw.get("returned", "default"),
        uniqueness=raw.get("uniqueness", "none"),
        canonical_values=tuple(raw.get("canonicalValues") or ()),
        reference_types=tuple(raw.get("referenceTypes") or ()),
        sub_attributes={sub.name.casefold(): sub for sub in subs},
    )


def _attributes(document: Mapping[str, Any]) -> list[Attribute]:
    return [_attribute(raw) for raw in document.get("attributes", ())]


def _keyed(attributes: Iterable[Attribute]) -> dict[str, Attribute]:
    return {attribute.name.casefold(): attribute for attribute in attributes}


# RFC 7643 §3.1: every resource has these, whatever its schema document declares.
_COMMON = (
    Attribute(
        "id",
        "string",
        case_exact=True,
        mutability="readOnly",
        returned="always",
        uniqueness="server",
    ),
    Attribute("externalId", "string", case_exact=True),
    Attribute(
        "meta",
        "complex",
        mutability="readOnly",
        sub_attributes=_keyed(
            (
                Attribute("resourceType", "string", case_exact=True, mutability="readOnly"),
                Attribute("created", "dateTime", mutability="readOnly"),
                Attribute("lastModified", "dateTime", mutability="readOnly"),
                Attribute("location", "reference", case_exact=True, mutability="readOnly"),
                Attribute("version", "string", case_exact=True, mutability="readOnly"),
            )
        ),
    ),
)


class ResourceSchema:
    """A core schema with its extensions: the one place attribute names are looked up."""

    def __init__(self, core: Attribute, name: str, extensions: Sequence[Attribute]) -> None:
        # The core and each extension are complex Attributes named by their URN, so that every
        # level is walked alike.
        self.core_urn = core.name
        self.name = name
        self.extension_urns = tuple(extension.name for extension in extensions)
        self._core = core
        self._objects = {extension.name.casefold(): extension for extension in extensions}

    @classmethod
    def from_documents(
        cls, core: Mapping[str, Any], extensions: Sequence[Mapping[str, Any]]
    ) -> ResourceSchema:
        core_attributes = _attributes(core)
        declared = {attribute.name.casefold() for attribute in core_attributes}
        core_attributes += [a for a in _COMMON if a.name.casefold() not in declared]
        root = Attribute(core["id"], "complex", sub_attributes=_keyed(core_attributes))
        extension_objects = [
            Attribute(document["id"], "complex", sub_attributes=_keyed(_attributes(document)))
            for document in extensions
        ]
        return cls(root, core.get("name") or core["id"].rsplit(":", 1)[-1], extension_objects)

    def extension_urn(self, text: str) -> str | None:
        """The declared spelling of an extension URN written in any case."""
        extension = self._objects.get(text.casefold())
        return extension.name if extension else None

    def extension(self, urn: str) -> Attribute | None:
        return self._objects.get(urn.casefold())

    def attributes(self, urn: str | None) -> Mapping[str, Attribute]:
        """Top-level attributes of the core (None) or of an extension."""
        holder = self._core if urn is None else self._objects.get(urn.casefold())
        return holder.sub_attributes if holder else {}

    def attribute(self, urn: str | None, name: str) -> Attribute | None:
        if urn is not None and urn.casefold() == self.core_urn.casefold():
            urn = None
        return self.attributes(urn).get(name.casefold())

    def schema_name(self, urn: str | None) -> str:
        return f"the {self.name} schema" if urn is None else urn

    def resolve(self, path: str) -> AttrRef | None:
        """`name`, `name.sub`, `urn:…:name.sub`, or an extension URN alone."""
        extension = self._objects.get(path.casefold())
        if extension is not None:
            return AttrRef(extension.name, extension)
        urn: str | None = None
        rest = path
        for candidate in sorted((self.core_urn, *self.extension_urns), key=len, reverse=True):
            if path.casefold().startswith(candidate.casefold() + ":"):
                urn = None if candidate == self.core_urn else candidate
                rest = path[len(candidate) + 1 :]
                break
        name, _, sub_name = rest.partition(".")
        attribute = self.attribute(urn, name)
        if attribute is None or "." in sub_name:
            return None
        if not sub_name:
            return AttrRef(urn, attribute)
        sub = attribute.sub(sub_name)
        return AttrRef(urn, attribute, sub) if sub else None


def invalid_value(reason: str, parameter: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_VALUE, reason, parameter=parameter)


def parse_datetime(text: str) -> datetime | None:
    """An xsd:dateTime as an instant (UTC when it names no zone, so that any two compare);
    None when it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def coerce_value(value: Any, attribute: Attribute, label: str) -> Any:
    """A client's value made to fit `attribute`, or None for "unassigned". Shared by whole
    documents and PATCH values so that both accept the same client quirks."""
    if value is None:
        return None
    if not attribute.multi_valued:
        if isinstance(value, list):
            raise invalid_value(f"{label} is single-valued and cannot take a list", label)
        return coerce_single(value, attribute, label)
    items = value if isinstance(value, list) else [value]
    coerced = [coerce_single(item, attribute, label) for item in items]
    return [item for item in coerced if item is not None] or None


def coerce_single(value: Any, attribute: Attribute, label: str) -> Any:
    """One value (one element of a multi-valued attribute)."""
    if value is None:
        return None
    kind = attribute.type
    if kind == "complex":
        if isinstance(value, str) and attribute.name == "manager":
            # Entra sends the manager's id alone; an empty string clears the manager.
            return {"value": value} if value else None
        if not isinstance(value, Mapping):
            raise invalid_value(f"{label} must be an object", label)
        separator = ":" if label.startswith("urn:") else "."
        return canonical_object(value, attribute.sub_attributes, label, label + separator) or None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.casefold() in ("true", "false"):
            # Entra sends "False" and "True".
            return value.casefold() == "true"
        raise invalid_value(f"{label} must be true or false", label)
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise invalid_value(f"{label} must be an integer", label)
    if kind == "decimal":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise invalid_value(f"{label} must be a number", label)
    if not isinstance(value, str):
        raise invalid_value(f"{label} must be a string", label)
    if kind == "dateTime" and parse_datetime(value) is None:
        raise invalid_value(f"{label} must be an xsd:dateTime such as 2024-01-31T12:00:00Z", label)
    return value


def canonical_object(
    value: Mapping[str, Any], attributes: Mapping[str, Attribute], owner: str, prefix: str = ""
) -> dict[str, Any]:
    """Keys rewritten to their declared spelling, read-only and null ones dropped; `owner` and
    `prefix` name the place in error reasons."""
    result: dict[str, Any] = {}
    for key, item in value.items():
        attribute = attributes.get(key.casefold())
        if attribute is None and key.casefold() == "schemas":
            # An extension object serialised on its own carries its schema (scim2-models).
            continue
        if attribute is None:
            raise invalid_value(f"{prefix}{key} is not an attribute of {owner}", prefix + key)
        if attribute.mutability == "readOnly":
            continue
        coerced = coerce_value(item, attribute, prefix + attribute.name)
        if coerced is not None:
            result[attribute.name] = coerced
    return result


def canonical_document(doc: Mapping[str, Any], schema: ResourceSchema) -> dict[str, Any]:
    """A copy of an incoming resource in canonical spelling with coerced values; read-only
    attributes are dropped since POST and PUT ignore them (RFC 7644 §3.5.1)."""
    listed = {str(urn).casefold() for urn in doc.get("schemas") or () if isinstance(urn, str)}
    result: dict[str, Any] = {}
    core: dict[str, Any] = {}
    for key, value in doc.items():
        if key.casefold() == "schemas":
            result["schemas"] = value
            continue
        urn = schema.extension_urn(key)
        if urn is not None:
            if not isinstance(value, Mapping):
                raise invalid_value(f"{urn} must be an object", urn)
            extension = canonical_object(value, schema.attributes(urn), urn)
            if extension:
                result[urn] = extension
        elif key.casefold() in listed and schema.attribute(None, key) is None:
            # Entra lists and sends extensions of its own (a Microsoft URN on groups).
            continue
        else:
            core[key] = value
    result.update(canonical_object(core, schema.attributes(None), schema.schema_name(None)))
    return result


def _requested(schema: ResourceSchema, names: Sequence[str] | None) -> set[tuple[str, ...]]:
    """Names as (urn-or-"", attribute, sub) prefixes, casefolded; unknown names match nothing."""
    found: set[tuple[str, ...]] = set()
    for name in names or ():
        ref = schema.resolve(name.strip())
        if ref is None:
            continue
        urn = (ref.urn or "").casefold()
        if ref.is_extension:
            found.add((urn,))
        elif ref.sub is None:
            found.add((urn, ref.name.casefold()))
        else:
            found.add((urn, ref.name.casefold(), ref.sub.casefold()))
    return found


def project(
    doc: Mapping[str, Any],
    schema: ResourceSchema,
    attributes: Sequence[str] | None,
    excluded: Sequence[str] | None,
) -> dict[str, Any]:
    """The document as returned for `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5)."""
    wanted = _requested(schema, attributes) if attributes else None
    dropped = _requested(schema, excluded)

    def keep(path: tuple[str, ...], attribute: Attribute) -> bool | None:
        """True: keep whole; False: drop; None: keep only the selected sub-attributes."""
        if attribute.returned == "always":
            return True
        if attribute.returned == "never" or any(path[: i + 1] in dropped for i in range(len(path))):
            return False
        if wanted is None:
            return attribute.returned != "request"
        if any(path[: i + 1] in wanted for i in range(len(path))):
            return True
        return None if any(w[: len(path)] == path for w in wanted) else False

    def select(value: Any, path: tuple[str, ...], attribute: Attribute) -> Any:
        if attribute.type != "complex":
            return value
        if isinstance(value, list):
            return [select(element, path, attribute) for element in value]
        if not isinstance(value, Mapping):
            return value
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub = attribute.sub(key)
            if sub is None:
                continue
            inner = (*path, sub.name.casefold())
            decision = keep(inner, sub)
            if decision is None or decision:
                result[key] = select(item, inner, sub)
        return result

    result: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "schemas":
            result[key] = value
            continue
        urn = schema.extension_urn(key)
        attribute = schema.extension(urn) if urn else schema.attribute(None, key)
        if attribute is None:
            continue
        path = (urn.casefold(),) if urn else ("", key.casefold())
        decision = keep(path, attribute)
        if decision is False:
            continue
        selected = select(value, path, attribute)
        if decision or selected:
            result[key] = selected
    return result


def drop_never(doc: Mapping[str, Any], schema: ResourceSchema) -> dict[str, Any]:
    """The document without returned-never attributes (the password), which no response shows."""

    def clean(value: Any, attribute: Attribute) -> Any:
        if attribute.type != "complex":
            return value
        if isinstance(value, list):
            return [clean(element, attribute) for element in value]
        if not isinstance(value, Mapping):
            return value
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub = attribute.sub(key)
            if sub is None or sub.returned != "never":
                result[key] = clean(item, sub) if sub else item
        return result

    result: dict[str, Any] = {}
    for key, value in doc.items():
        urn = schema.extension_urn(key)
        attribute = schema.extension(urn) if urn else schema.attribute(None, key)
        if attribute is None:
            result[key] = value
        elif attribute.returned != "never":
            result[key] = clean(value, attribute)
    return result
