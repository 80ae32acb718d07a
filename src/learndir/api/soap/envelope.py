"""The SOAP 1.1 envelope: finding the operation element of a request, and writing results and
Faults shaped like the seed's samples.

Faults carry the core's message as faultstring, byte for byte, and a `<detail><error>` with the
stable error code and, when one is to blame, the parameter and the reason. The HTTP status
follows the product's rules rather than SOAP 1.1's "500 for every Fault": a client mistake is
never a 500, and SOAP clients (zeep among them) read a Fault whatever the status.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree
from starlette.responses import Response

from learndir.api.xml import local_name, parse_xml
from learndir.core.errors import MESSAGES, DomainError, ErrorCode, invalid

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE_NS = "http://ispringlearn.com/go/services/api/soap"
MEDIA_TYPE = "text/xml; charset=utf-8"

# lxml-stubs type namespace maps as str -> str; lxml keys the default namespace with None.
SERVICE_NSMAP: dict[Any, str] = {None: SERVICE_NS}
_RESULT_NSMAP: dict[Any, str] = {"SOAP-ENV": SOAP_ENV, None: SERVICE_NS}
# No default namespace on a Fault's envelope: faultcode, faultstring and detail are unqualified.
_FAULT_NSMAP = {"SOAP-ENV": SOAP_ENV}

CLIENT = "SOAP-ENV:Client"
SERVER = "SOAP-ENV:Server"

# The one table from domain errors to SOAP: faultcode and HTTP status.
FAULTS: dict[ErrorCode, tuple[str, int]] = {
    ErrorCode.INVALID_PARAMETERS: (CLIENT, 400),
    ErrorCode.UNAUTHENTICATED: (CLIENT, 401),
    ErrorCode.PERMISSION_DENIED: (CLIENT, 403),
    ErrorCode.SEAT_LIMIT_EXCEEDED: (CLIENT, 403),
    ErrorCode.NOT_FOUND: (CLIENT, 404),
    ErrorCode.LOGIN_TAKEN: (CLIENT, 409),
    ErrorCode.EMAIL_TAKEN: (CLIENT, 409),
    ErrorCode.FIELD_VALUE_TAKEN: (CLIENT, 409),
    ErrorCode.ACCOUNT_EXISTS: (CLIENT, 409),
    ErrorCode.DEPARTMENT_NOT_EMPTY: (CLIENT, 409),
    # A sign-in lock is the seed's authentication Fault (see domain_fault_response).
    ErrorCode.TOO_MANY_ATTEMPTS: (CLIENT, 401),
}
# A code missing from the table (a newer one) is still the client's doing.
_CLIENT_FAULT = (CLIENT, 400)
INTERNAL_FAULT = (SERVER, 500)
INTERNAL_MESSAGE = "Internal server error"

_XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
_NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def fault_row(code: ErrorCode | None) -> tuple[str, int]:
    """faultcode and HTTP status of a client error; no code, or one the table lacks, is 400."""
    return FAULTS.get(code, _CLIENT_FAULT) if code else _CLIENT_FAULT


def service_tag(name: str) -> str:
    """The qualified name of an element of the service's namespace."""
    return f"{{{SERVICE_NS}}}{name}"


def operation_element(body: bytes) -> etree._Element:
    """The single element inside the Body of a SOAP 1.1 envelope; anything else is Wrong
    parameters with the reason. The Header, if any, is ignored."""
    root = parse_xml(body)
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise invalid(
            "Envelope", f"the document must be a SOAP 1.1 Envelope in the namespace {SOAP_ENV}"
        )
    bodies = root.findall(f"{{{SOAP_ENV}}}Body")
    if len(bodies) != 1:
        raise invalid("Body", "the Envelope must hold exactly one SOAP-ENV:Body")
    operations = [child for child in bodies[0] if isinstance(child.tag, str)]
    if len(operations) != 1:
        found = ", ".join(local_name(child) for child in operations) or "nothing"
        raise invalid("Body", f"the Body must hold exactly one request element, not {found}")
    return operations[0]


def _document(envelope: etree._Element) -> bytes:
    return _XML_DECLARATION + etree.tostring(envelope, encoding="utf-8")


def _response(content: bytes, status: int) -> Response:
    return Response(content, status_code=status, media_type=MEDIA_TYPE)


def result_body() -> etree._Element:
    """The Body of a new result envelope: a result built inside it (see results.result) needs no
    move from a document of its own into the envelope's (lxml copies and re-declares its
    namespaces on such a move)."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_RESULT_NSMAP)
    return etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")


def soap_response(result: etree._Element) -> Response:
    """A 200 answer: the envelope that `result` (results.result) was built in."""
    return _response(_document(result.getroottree().getroot()), 200)


def _fault_document(
    faultcode: str,
    message: str,
    code: ErrorCode | None,
    parameter: str | None,
    reason: str | None,
) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_FAULT_NSMAP)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = faultcode
    etree.SubElement(fault, "faultstring").text = _NOT_XML_TEXT.sub("?", message)
    entries = [("code", code and str(code)), ("parameter", parameter), ("reason", reason)]
    if any(value for _, value in entries):
        detail = etree.SubElement(fault, "detail")
        error = etree.SubElement(detail, service_tag("error"), nsmap=SERVICE_NSMAP)
        for name, value in entries:
            if value:
                etree.SubElement(error, service_tag(name)).text = _NOT_XML_TEXT.sub("?", value)
    return _document(envelope)


def fault_bytes(
    code: ErrorCode | None,
    message: str,
    parameter: str | None = None,
    reason: str | None = None,
) -> tuple[bytes, str]:
    """A client Fault's body and media type, for answers written below the router (the
    body-size cap's 413). `code` None: no domain error code applies."""
    return _fault_document(fault_row(code)[0], message, code, parameter, reason), MEDIA_TYPE


def soap_fault_response(
    code: ErrorCode | None,
    message: str,
    *,
    parameter: str | None = None,
    reason: str | None = None,
    status: int | None = None,
) -> Response:
    """A client Fault, with the table's HTTP status unless `status` is given."""
    content, _ = fault_bytes(code, message, parameter, reason)
    return _response(content, status or fault_row(code)[1])


def domain_fault_response(error: DomainError) -> Response:
    """The Fault for `error`. A sign-in lock reads as the seed's authentication Fault (the
    clients know no other), with its code and reason in the detail and a Retry-After header."""
    message = error.message
    if error.code is ErrorCode.TOO_MANY_ATTEMPTS:
        message = MESSAGES[ErrorCode.UNAUTHENTICATED]
    response = soap_fault_response(
        error.code, message, parameter=error.parameter, reason=error.reason
    )
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def internal_fault_response() -> Response:
    """SOAP-ENV:Server: the one Fault that is our fault, not the client's."""
    faultcode, status = INTERNAL_FAULT
    return _response(_fault_document(faultcode, INTERNAL_MESSAGE, None, None, None), status)
