"""SCIM PATCH (RFC 7644 §3.5.2) applied to a document, with the variants Okta and Entra send."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from learndir.core.errors import DomainError, ErrorCode
from learndir.core.scim.attributes import (
    Attribute,
    AttrRef,
    ResourceSchema,
    coerce_single,
    coerce_value,
    invalid_value,
)
from learndir.core.scim.filters import And, Compare, Node, matches_element, parse_value_path

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_OPS = ("add", "replace", "remove")


@dataclass(frozen=True)
class _Path:
    ref: AttrRef
    filter: Node | None = None


Chooser = Callable[[dict[str, Any]], bool]


def _every(element: dict[str, Any]) -> bool:
    """Without a filter, a sub-attribute path reaches every element (an empty list gets one)."""
    return True


def _invalid_path(reason: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_PATH, reason, parameter="path")


def _no_target(reason: str) -> DomainError:
    return DomainError(ErrorCode.NO_TARGET, reason, parameter="path")


def _read_only(ref: AttrRef, attribute: Attribute) -> DomainError:
    kind = "read-only" if attribute.mutability == "readOnly" else "immutable"
    return DomainError(ErrorCode.READ_ONLY, f"{ref.text()} is {kind}", parameter=ref.text())


def _parse_path(text: str, schema: ResourceSchema) -> _Path:
    if not text.strip():
        raise _invalid_path("the path is empty")
    if "[" in text or "]" in text:
        ref, condition = parse_value_path(text, schema)
        if not ref.attribute.multi_valued:
            raise _invalid_path(f"{ref.name} is single-valued and cannot take [filter]")
        return _Path(ref, condition)
    plain = schema.resolve(text)
    if plain is None:
        raise _invalid_path(f"{text} is not an attribute of {schema.schema_name(None)}")
    return _Path(plain)


def _holder(doc: dict[str, Any], ref: AttrRef, create: bool) -> dict[str, Any] | None:
    """The object holding the attribute: the document, or its extension object."""
    if ref.urn is None or ref.is_extension:
        return doc
    extension = doc.get(ref.urn)
    if not isinstance(extension, dict):
        if not create:
            return None
        extension = doc[ref.urn] = {}
    return extension


def _eq_terms(node: Node) -> dict[str, Any] | None:
    """The element a filter made only of `eq` terms joined by `and` describes, else None."""
    if isinstance(node, Compare) and node.op == "eq" and node.path.sub is not None:
        return {node.path.sub: node.value}
    if isinstance(node, And):
        a, b = _eq_terms(node.a), _eq_terms(node.b)
        return None if a is None or b is None else {**a, **b}
    return None


def _check_immutable(ref: AttrRef, old: Any, new: Any) -> None:
    """Immutable attributes change only from unassigned, or to themselves (RFC 7643 §2.2);
    read-only ones were refused before any change."""
    if old is None or old == new:
        return
    for attribute in (ref.attribute, ref.sub_attribute):
        if attribute is not None and attribute.mutability == "immutable":
            raise _read_only(ref, attribute)


class _Patcher:
    def __init__(self, doc: dict[str, Any], schema: ResourceSchema) -> None:
        self.doc = doc
        self.schema = schema

    def apply(self, op: str, path: _Path, value: Any, has_value: bool) -> None:
        ref = path.ref
        for attribute in (ref.attribute, ref.sub_attribute):
            if attribute is not None and attribute.mutability == "readOnly":
                raise _read_only(ref, attribute)
        if path.filter is not None:
            self.filtered(op, ref, path.filter, value, has_value)
        elif op == "remove":
            self.remove(ref, value if has_value else None)
        elif ref.sub_attribute is not None and ref.attribute.multi_valued:
            self.set_on_elements(op, ref, value, _every, create={})
        elif ref.sub_attribute is not None:
            self.set_sub(ref, value)
        else:
            self.set_whole(op, ref, value)

    def current(self, ref: AttrRef) -> Any:
        holder = _holder(self.doc, ref, create=False)
        key = ref.urn if ref.is_extension else ref.name
        return holder.get(key) if holder is not None and key is not None else None

    def store(self, ref: AttrRef, value: Any) -> None:
        """Set the whole attribute; None, [] and {} unassign it."""
        holder = _holder(self.doc, ref, create=value not in (None, [], {}))
        key = ref.urn if ref.is_extension else ref.name
        if holder is None or key is None:
            return
        if value in (None, [], {}):
            if ref.attribute.required:
                raise invalid_value(f"{ref.text()} is required and cannot be removed", ref.name)
            holder.pop(key, None)
        else:
            holder[key] = value

    def set_whole(self, op: str, ref: AttrRef, value: Any) -> None:
        attribute = ref.attribute
        old = self.current(ref)
        new = coerce_value(value, attribute, ref.text())
        if attribute.multi_valued and op == "add":
            merged = list(old or [])
            merged += [item for item in new or [] if item not in merged]
            new = merged
        elif attribute.type == "complex" and op == "add" and isinstance(old, dict):
            for key, item in (new or {}).items():
                sub = attribute.sub(key)
                if sub is not None:
                    _check_immutable(AttrRef(ref.urn, attribute, sub), old.get(key), item)
            new = {**old, **(new or {})}
        _check_immutable(ref, old, new)
        self.store(ref, new)

    def set_sub(self, ref: AttrRef, value: Any) -> None:
        assert ref.sub_attribute is not None
        old = self.current(ref)
        element = dict(old) if isinstance(old, dict) else {}
        self.write_sub(ref, element, value)
        self.store(AttrRef(ref.urn, ref.attribute), element)

    def write_sub(self, ref: AttrRef, element: dict[str, Any], value: Any) -> None:
        assert ref.sub_attribute is not None
        sub = ref.sub_attribute
        new = coerce_value(value, sub, ref.text())
        _check_immutable(ref, element.get(sub.name), new)
        if new is None:
            element.pop(sub.name, None)
        else:
            element[sub.name] = new

    def set_on_elements(
        self,
        op: str,
        ref: AttrRef,
        value: Any,
        chosen: Chooser,
        create: dict[str, Any] | None = None,
    ) -> None:
        """Set `value` (a sub-attribute, or the element itself) on every chosen element; with
        none chosen, `create` is the element to add, else the path has no target."""
        whole = AttrRef(ref.urn, ref.attribute)
        elements = [dict(item) for item in self.current(whole) or [] if isinstance(item, dict)]
        hits = [element for element in elements if chosen(element)]
        if not hits:
            if create is None:
                raise _no_target(f"no element of {ref.name} matches the path")
            hits = [dict(create)]
            elements.append(hits[0])
        for element in hits:
            if ref.sub_attribute is not None:
                self.write_sub(ref, element, value)
                continue
            new = coerce_single(
                value[0] if isinstance(value, list) and len(value) == 1 else value,
                ref.attribute,
                ref.text(),
            )
            if not isinstance(new, dict):
                raise invalid_value(f"{ref.text()} needs one object per element", "value")
            replacement = {**element, **new} if op == "add" else new
            element.clear()
            element.update(replacement)
        self.store(whole, [element for element in elements if element])

    def filtered(self, op: str, ref: AttrRef, condition: Node, value: Any, has_value: bool) -> None:
        def chosen(element: dict[str, Any]) -> bool:
            return matches_element(condition, element)

        if op == "remove":
            whole = AttrRef(ref.urn, ref.attribute)
            elements = self.current(whole) or []
            if ref.sub_attribute is None:
                self.store(whole, [item for item in elements if not chosen(item)])
                return
            kept = []
            for item in elements:
                if chosen(item):
                    item = dict(item)
                    self.write_sub(ref, item, None)
                kept.append(item)
            self.store(whole, [item for item in kept if item])
            return
        if not has_value:
            raise invalid_value(f"{op} needs a value", "value")
        # Entra adds and replaces emails[type eq "work"].value on users with no work email.
        terms = _eq_terms(condition)
        create = terms if op == "add" or ref.sub_attribute is not None else None
        self.set_on_elements(op, ref, value, chosen, create)

    def remove(self, ref: AttrRef, value: Any) -> None:
        attribute = ref.attribute
        old = self.current(ref)
        if ref.sub_attribute is None and attribute.multi_valued and isinstance(value, list):
            # Entra removes members by listing them: only those go.
            gone = {
                str(item["value"])
                for item in value
                if isinstance(item, Mapping) and item.get("value") is not None
            }
            self.store(ref, [item for item in old or [] if str(item.get("value")) not in gone])
            return
        if ref.sub_attribute is None:
            _check_immutable(ref, old, None)
            self.store(ref, None)
        elif attribute.multi_valued:
            self.set_on_elements("remove", ref, None, _every, create={})
        else:
            self.set_sub(ref, None)


def _operations(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_OP not in schemas:
        raise invalid_value(f"schemas must contain {PATCH_OP}", "schemas")
    operations = next((v for k, v in body.items() if k.casefold() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise invalid_value("Operations must be a non-empty list", "Operations")
    if not all(isinstance(operation, Mapping) for operation in operations):
        raise invalid_value("each operation must be an object", "Operations")
    return operations


def _field(operation: Mapping[str, Any], name: str) -> tuple[Any, bool]:
    for key, value in operation.items():
        if key.casefold() == name:
            return value, True
    return None, False


def _primaries(doc: Mapping[str, Any], schema: ResourceSchema) -> dict[AttrRef, list[Any]]:
    """The elements marked primary, per multi-valued attribute that has `primary`."""
    found: dict[AttrRef, list[Any]] = {}
    for urn in (None, *schema.extension_urns):
        for attribute in schema.attributes(urn).values():
            if attribute.multi_valued and attribute.sub("primary") is not None:
                ref = AttrRef(urn, attribute)
                holder = doc if urn is None else doc.get(urn)
                items = holder.get(attribute.name) if isinstance(holder, Mapping) else None
                found[ref] = [
                    copy.deepcopy(item)
                    for item in items or []
                    if isinstance(item, Mapping) and item.get("primary") is True
                ]
    return found


def _one_primary(
    doc: dict[str, Any], before: dict[AttrRef, list[Any]], schema: ResourceSchema
) -> None:
    """At most one primary element (RFC 7643 §2.4): the one an operation just made primary."""
    for ref, marked in _primaries(doc, schema).items():
        if len(marked) < 2:
            continue
        fresh = [item for item in marked if item not in before.get(ref, [])]
        keep = fresh[-1] if fresh else marked[0]
        holder = doc if ref.urn is None else doc[ref.urn]
        for item in holder[ref.name]:
            if item.get("primary") is True and item != keep:
                item.pop("primary")


def apply_patch(
    doc: Mapping[str, Any], body: Mapping[str, Any], schema: ResourceSchema
) -> dict[str, Any]:
    """The document after the request's operations, which apply in order, all or none; `doc`
    is left untouched."""
    result = copy.deepcopy(dict(doc))
    patcher = _Patcher(result, schema)
    for operation in _operations(body):
        raw_op, _ = _field(operation, "op")
        op = raw_op.casefold() if isinstance(raw_op, str) else ""
        if op not in _OPS:
            raise invalid_value(f"op must be add, replace or remove, not {raw_op!r}", "op")
        path, has_path = _field(operation, "path")
        value, has_value = _field(operation, "value")
        before = _primaries(result, schema)
        if has_path and path is not None:
            if not isinstance(path, str):
                raise _invalid_path("the path must be a string")
            patcher.apply(op, _parse_path(path, schema), value, has_value)
        elif op == "remove":
            raise _no_target("remove needs a path")
        else:
            if not isinstance(value, Mapping):
                raise invalid_value(f"{op} without a path needs an object value", "value")
            for key, item in _flatten(value, schema):
                ref = schema.resolve(key)
                if ref is None:
                    raise invalid_value(
                        f"{key} is not an attribute of {schema.schema_name(None)}", key
                    )
                if ref.target.mutability == "readOnly" and patcher.current(ref) == item:
                    continue  # a client echoing the id back changes nothing
                patcher.apply(op, _Path(ref), item, True)
        _one_primary(result, before, schema)
    for urn in schema.extension_urns:
        if result.get(urn) == {}:
            del result[urn]
    return result


def _flatten(value: Mapping[str, Any], schema: ResourceSchema) -> list[tuple[str, Any]]:
    """Keys of a path-less value; an extension object's keys become URN-prefixed paths."""
    pairs: list[tuple[str, Any]] = []
    for key, item in value.items():
        urn = schema.extension_urn(key)
        if urn is not None and isinstance(item, Mapping):
            pairs += [(f"{urn}:{name}", inner) for name, inner in item.items()]
        elif key.casefold() != "schemas":
            pairs.append((key, item))
    return pairs
