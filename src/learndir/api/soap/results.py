"""Result elements written from the WSDL's own declarations.

Each result is built from plain data (the same dictionaries the REST interface presents) and
written in the order, with the item names and the optionality its type declares in the WSDL:
what a client reads always matches the schema it was given, and keys the schema does not
declare are left out. A list given for a list type (IdList, ProfileFieldValueList, ...) fills
that type's one repeated child.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from learndir.api.soap.envelope import SERVICE_NS, result_body, service_tag
from learndir.api.soap.schema import SCHEMA_ELEMENT

_XS = "http://www.w3.org/2001/XMLSchema"


@dataclass(frozen=True)
class _Child:
    name: str
    # The local name of a complex type of the service, or None for a simple (xs:) type.
    complex_type: str | None
    repeated: bool
    optional: bool


def _children(complex_type: etree._Element | None) -> tuple[_Child, ...]:
    if complex_type is None:
        return ()
    result = []
    for element in complex_type.iterfind(f"{{{_XS}}}*/{{{_XS}}}element"):
        qname = _resolve(element, element.get("type", ""))
        result.append(
            _Child(
                name=element.get("name", ""),
                complex_type=qname.localname if qname.namespace == SERVICE_NS else None,
                repeated=element.get("maxOccurs", "1") != "1",
                optional=element.get("minOccurs", "1") == "0",
            )
        )
    return tuple(result)


def _resolve(element: etree._Element, prefixed: str) -> etree.QName:
    """A type reference such as "tns:IdList" as a qualified name, by the prefixes in scope."""
    prefix, _, local = prefixed.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    return etree.QName(namespace, local) if namespace else etree.QName(local)


def _type_children(element: etree._Element) -> tuple[_Child, ...]:
    return _children(element.find(f"{{{_XS}}}complexType"))


_NAMED: dict[str, tuple[_Child, ...]] = {
    complex_type.get("name", ""): _children(complex_type)
    for complex_type in SCHEMA_ELEMENT.iterfind(f"{{{_XS}}}complexType")
}
_RESULTS: dict[str, tuple[_Child, ...]] = {
    element.get("name", ""): _type_children(element)
    for element in SCHEMA_ELEMENT.iterfind(f"{{{_XS}}}element")
    if element.get("name", "").endswith("Result")
}


def result(name: str, data: dict[str, Any] | None = None) -> etree._Element:
    """The result element `name` (for example "GetUsersResult") holding `data`, in the Body of
    the envelope that answers it (see envelope.soap_response)."""
    element = etree.SubElement(result_body(), service_tag(name))
    _fill(element, _RESULTS[name], data or {})
    return element


def _fill(parent: etree._Element, children: tuple[_Child, ...], data: dict[str, Any]) -> None:
    for child in children:
        value = data.get(child.name)
        values = (value or []) if child.repeated else [value]
        for item in values:
            if item is None or (item == "" and child.optional):
                if not child.optional:
                    raise ValueError(f"{child.name} is required in a {parent.tag} result")
                continue
            _append(parent, child, item)


def _append(parent: etree._Element, child: _Child, value: Any) -> None:
    element = etree.SubElement(parent, service_tag(child.name))
    if child.complex_type is None:
        element.text = _scalar(value)
        return
    members = _NAMED[child.complex_type]
    if isinstance(value, dict):
        _fill(element, members, value)
    else:
        (only,) = members
        _fill(element, members, {only.name: list(value)})


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
