"""The SOAP 1.1 endpoint: `/soap?wsdl` serves the WSDL, `POST /soap` runs an operation.

A request goes: envelope -> the one element in its Body -> the operation table (by that
element's local name; SOAPAction is ignored) -> namespace normalisation -> XSD validation ->
the operation, which authenticates the caller and calls the core. Every failure on the way is
a Fault from the one table in `envelope`.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from learndir.api.execution import body_may_carry_password, call_core
from learndir.api.soap.envelope import (
    MEDIA_TYPE,
    domain_fault_response,
    fault_bytes,
    internal_fault_response,
    operation_element,
    soap_fault_response,
    soap_response,
)
from learndir.api.soap.operations import OPERATIONS
from learndir.api.soap.requests import check_texts
from learndir.api.soap.schema import (
    normalise_request,
    unknown_leaves_into_fields,
    validate,
    wsdl_document,
)
from learndir.api.xml import XmlRejected, local_name
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.db.engine import Database

__all__ = ["answer", "fault_bytes", "internal_fault_response", "router", "soap_fault_response"]

logger = logging.getLogger(__name__)

router = APIRouter()


def _wsdl_response(request: Request) -> Response:
    return Response(wsdl_document(str(request.url_for("soap"))), media_type=MEDIA_TYPE)


@router.get("/soap.wsdl", include_in_schema=False)
def soap_wsdl(request: Request) -> Response:
    return _wsdl_response(request)


@router.get("/soap", include_in_schema=False)
def soap_get(request: Request) -> Response:
    if any(key.casefold() == "wsdl" for key in request.query_params):
        return _wsdl_response(request)
    return domain_fault_response(
        invalid(
            "wsdl", f"POST SOAP 1.1 requests here; the WSDL is at {request.url_for('soap')}?wsdl"
        )
    )


@router.post("/soap", name="soap", include_in_schema=False)
async def soap_post(request: Request) -> Response:
    body = await request.body()
    db = request.app.state.db
    hashes = body_may_carry_password(body)
    return await call_core(db, lambda: answer(db, body, hashes), may_hash=hashes)


def answer(db: Database, body: bytes, hashes: bool = False) -> Response:
    """The response to one SOAP request body, success or Fault (`hashes`: it may hash or verify
    a password)."""
    operation_name = "?"
    try:
        element = operation_element(body)
        operation_name = local_name(element)
        operation = OPERATIONS.get(operation_name)
        if operation is None:
            known = ", ".join(OPERATIONS)
            raise invalid(operation_name, f"unknown operation; this service answers {known}")
        request = normalise_request(element, operation.empty_lists)
        if operation.unknown_leaves_are_fields:
            unknown_leaves_into_fields(request)
        check_texts(request)
        validate(request)
        result = db.run(lambda: operation.run(db, request), writes=operation.writes, hashes=hashes)
        return soap_response(result)
    except DomainError as exc:
        return domain_fault_response(exc)
    except XmlRejected as exc:
        return domain_fault_response(DomainError(ErrorCode.INVALID_PARAMETERS, str(exc)))
    except Exception:
        logger.exception("SOAP operation %s failed unexpectedly", operation_name)
        return internal_fault_response()
