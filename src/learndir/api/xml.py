"""Hardened XML for every interface: no DTDs, no entities, no network, bounded depth and size.

Input is parsed by lxml with entity resolution, DTD loading and network access switched off and
the huge-tree option left off (libxml2 then caps depth and node sizes); any document carrying a
DOCTYPE is refused outright, so entity-expansion bombs and external entities never get near the
parser's expansion code.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from lxml import etree

MAX_DEPTH = 64
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_DOCTYPE16 = [
    re.compile("<!DOCTYPE".encode(enc), re.IGNORECASE) for enc in ("utf-16-le", "utf-16-be")
]


class XmlRejected(ValueError):
    """The body is not XML we accept; the message says why."""


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


# One parser per thread (a parser must not parse two documents at once), kept: making one for
# each request costs more than the parse of a small SOAP request.
_parsers = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = _new_parser()
    return parser


def parse_xml(body: bytes) -> etree._Element:
    if not body.strip():
        raise XmlRejected("the request body is empty")
    # A UTF-16 document has NUL bytes (every ASCII character is two bytes, one of them 0).
    if _DOCTYPE.search(body) or (b"\0" in body and any(p.search(body) for p in _DOCTYPE16)):
        raise XmlRejected("DOCTYPE declarations are not accepted")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        message = " ".join(str(exc.msg).split())
        if "depth" in message.lower():
            raise XmlRejected(
                f"the document nests too deeply (depth over {MAX_DEPTH} levels)"
            ) from None
        raise XmlRejected(f"malformed XML: {message.split(', use XML_PARSE_HUGE')[0]}") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XmlRejected("DOCTYPE declarations are not accepted")
    # Comments and processing instructions were dropped by the parser; what is not an element
    # now is an entity reference.
    for _entity in root.iter(etree.Entity, etree.Comment, etree.ProcessingInstruction):
        raise XmlRejected("entity references are not accepted")
    _check_depth(root)
    return root


def _check_depth(root: etree._Element) -> None:
    """Level by level: a request of a few elements costs a few list comprehensions."""
    level = [root]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise XmlRejected(f"the document nests too deeply (depth over {MAX_DEPTH} levels)")
        level = [child for element in level for child in element]
        depth += 1


def local_name(element: etree._Element) -> str:
    tag = element.tag
    if isinstance(tag, str):
        # "{namespace}name" or "name": what QName(element).localname says, without building a
        # QName (a SOAP addUser asks this some 30 times; 0.5 against 0.1 us each).
        return tag.rpartition("}")[2]
    return etree.QName(element).localname


def element_to_data(element: etree._Element, list_keys: frozenset[str] = frozenset()) -> Any:
    """Turns an element into plain data: text for a leaf, a list when its children repeat one
    name (or its own name is a known list), otherwise a dict by child name."""
    children = list(element)
    name = local_name(element)
    if not children:
        if name in list_keys:
            text = (element.text or "").strip()
            return [text] if text else []
        return element.text if element.text is not None else ""
    names = [local_name(c) for c in children]
    if name in list_keys or (len(names) > 1 and len(set(names)) == 1):
        return [element_to_data(c, list_keys) for c in children]
    result: dict[str, Any] = {}
    for child, child_name in zip(children, names, strict=True):
        if child_name in result:
            raise XmlRejected(f"element <{child_name}> appears more than once in <{name}>")
        result[child_name] = element_to_data(child, list_keys)
    return result
