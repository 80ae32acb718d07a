"""Our WSDL, and checking a request element against the XSD types inside it.

The WSDL file is the contract: it is served as is (with the caller's own URL as the service
address), and the same schema validates every request before an operation sees it.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from lxml import etree

from learndir.api.soap.envelope import SERVICE_NS, SERVICE_NSMAP, service_tag
from learndir.api.xml import local_name
from learndir.core.errors import DomainError, invalid

WSDL_PATH = Path(__file__).with_name("learndir.wsdl")
_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_SOAP_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
_XS = "http://www.w3.org/2001/XMLSchema"
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_ELEMENT_PREFIX = re.compile(r"^Element '[^']*': ")

_WSDL = etree.parse(str(WSDL_PATH))


def _inline_schema(wsdl: etree._ElementTree) -> etree._Element:
    schema = wsdl.find(f"{{{_WSDL_NS}}}types/{{{_XS}}}schema")
    if schema is None:
        raise RuntimeError(f"{WSDL_PATH} has no inline XSD schema")
    return schema


SCHEMA_ELEMENT = _inline_schema(_WSDL)


def _compile_schema() -> etree.XMLSchema:
    return etree.XMLSchema(copy.deepcopy(SCHEMA_ELEMENT))


# Compiled at import, so a broken WSDL fails at start-up. Validation runs in the thread pool,
# and an XMLSchema object keeps one error log for every call made on it: one per thread.
_compiled = threading.local()
_compiled.schema = _compile_schema()


def _schema() -> etree.XMLSchema:
    schema: etree.XMLSchema | None = getattr(_compiled, "schema", None)
    if schema is None:
        schema = _compiled.schema = _compile_schema()
    return schema


def _child_names(declaration: etree._Element) -> frozenset[str]:
    return frozenset(
        child.get("name", "")
        for child in declaration.iterfind(f"{{{_XS}}}complexType/*/{{{_XS}}}element")
    )


# The child elements each global element declares (a request's parameters), by its name.
DECLARED_CHILDREN: dict[str, frozenset[str]] = {
    declaration.get("name", ""): _child_names(declaration)
    for declaration in SCHEMA_ELEMENT.iterfind(f"{{{_XS}}}element")
}


@functools.lru_cache(maxsize=32)
def wsdl_document(location: str) -> bytes:
    """The WSDL with `location` as the service's address."""
    document = copy.deepcopy(_WSDL)
    for address in document.iter(f"{{{_SOAP_BINDING_NS}}}address"):
        address.set("location", location)
    return etree.tostring(document, xml_declaration=True, encoding="utf-8")


def _path(names: list[str]) -> str:
    return ".".join(names)


_IN_SERVICE_NS = f"{{{SERVICE_NS}}}"


def _check_namespace(element: etree._Element, names: list[str]) -> None:
    tag = element.tag
    if not isinstance(tag, str) or not tag.startswith("{") or tag.startswith(_IN_SERVICE_NS):
        return
    namespace = etree.QName(element).namespace
    if namespace not in (None, SERVICE_NS):
        raise invalid(
            _path(names), f"is in the namespace {namespace}; use {SERVICE_NS} or no namespace"
        )


def _normalised_child(
    element: etree._Element, parent: etree._Element, names: list[str], keep_empty: bool = False
) -> None:
    """A copy of `element` under `parent`, in the service namespace, without attributes; none
    when it is empty (an empty element means an absent parameter) unless `keep_empty`; none
    when nil. Built in place under `parent` (an element made apart and appended would be moved
    from a document of its own)."""
    _check_namespace(element, names)
    if element.get(_XSI_NIL) in ("true", "1"):
        return
    result = etree.SubElement(parent, service_tag(local_name(element)))
    _copy_children(element, result, names)
    if len(result) == 0 and not (element.text or "").strip():
        if not keep_empty:
            parent.remove(result)
            return
    else:
        result.text = element.text
    result.tail = element.tail


def _copy_children(
    source: etree._Element,
    target: etree._Element,
    names: list[str],
    keep_empty: frozenset[str] = frozenset(),
) -> None:
    for child in source:
        if not isinstance(child.tag, str):
            continue
        name = local_name(child)
        _normalised_child(child, target, [*names, name], name in keep_empty)


def normalise_request(
    element: etree._Element, keep_empty: frozenset[str] = frozenset()
) -> etree._Element:
    """The request element with every element in the service namespace (clients send them
    qualified or unqualified), attributes dropped and empty parameters removed, except the
    top-level parameters named in `keep_empty` (a list sent empty on purpose)."""
    name = local_name(element)
    _check_namespace(element, [name])
    result = etree.Element(service_tag(name), nsmap=SERVICE_NSMAP)
    _copy_children(element, result, [], keep_empty)
    result.text = element.text
    for parameter, order in _ANY_ORDER.items():
        for holder in result.iterchildren(service_tag(parameter)):
            holder[:] = sorted(holder, key=lambda item: order.get(local_name(item), len(order)))
    return result


# List parameters whose kinds of item the schema declares one after the other (so that WSDL
# clients can fill each kind by name) but which callers may send interleaved; their order does
# not matter, so they are sorted into the declared order before validation.
_ANY_ORDER = {"roles": {"id": 0, "userRole": 1}}


def unknown_leaves_into_fields(request: etree._Element) -> None:
    """Moves each undeclared leaf parameter into `<fields>` as a profile field value (the seed
    sends login, email and other profile values as top-level elements); an undeclared element
    with children is Wrong parameters."""
    declared = DECLARED_CHILDREN.get(local_name(request), frozenset())
    fields = request.find(service_tag("fields"))
    for child in list(request):
        name = local_name(child)
        if name in declared:
            continue
        if len(child):
            raise invalid(name, "unknown parameter")
        if fields is None:
            fields = etree.SubElement(request, service_tag("fields"))
        field = etree.SubElement(fields, service_tag("field"))
        etree.SubElement(field, service_tag("name")).text = name
        etree.SubElement(field, service_tag("value")).text = child.text
        request.remove(child)


def validate(request: etree._Element) -> None:
    """Checks a normalised request against its declaration in the WSDL's schema."""
    schema = _schema()
    if schema.validate(request):
        return
    # lxml-stubs do not know that an error log is a sequence of entries.
    errors = cast(Sequence[etree._LogEntry], schema.error_log)
    raise _schema_error(request, errors[0])


def _element_at(request: etree._Element, path: str | None) -> etree._Element:
    found = request.xpath(path) if path else None
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return found[0]
    return request


def _schema_error(request: etree._Element, error: etree._LogEntry) -> DomainError:
    element = _element_at(request, error.path)
    reason = _ELEMENT_PREFIX.sub("", error.message).replace(f"{{{SERVICE_NS}}}", "")
    if reason.startswith("This element is not expected") and _repeats_a_sibling(element):
        reason = "given more than once"
    if element.getparent() is None:
        return invalid(local_name(element), reason)
    names = [local_name(e) for e in element.iterancestors() if e.getparent() is not None]
    return invalid(_path([*reversed(names), local_name(element)]), reason)


def _repeats_a_sibling(element: etree._Element) -> bool:
    return any(sibling.tag == element.tag for sibling in element.itersiblings(preceding=True))
