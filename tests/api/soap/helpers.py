"""Helpers shared by the SOAP tests: authentication in both generations, Faults read from zeep
and raw envelopes posted by hand."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import zeep.exceptions

from tests.support import Server, World

SERVICE_NS = "http://ispringlearn.com/go/services/api/soap"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XS_NS = "http://www.w3.org/2001/XMLSchema"
GENERATIONS = ["credentials", "token"]


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def auth(world: World, generation: str, login: str = "owner") -> dict[str, Any]:
    if generation == "token":
        return {"token": world.token(login)}
    return {
        "credentials": {
            "accountUrl": world.account_url,
            "email": login,
            "password": world.passwords[login],
        }
    }


def fault_of(call: Callable[[], Any]) -> dict[str, str | None]:
    """The Fault's faultcode and faultstring, and its detail's code, parameter and reason."""
    with pytest.raises(zeep.exceptions.Fault) as caught:
        call()
    fault = caught.value
    error = fault.detail.find(f"{{{SERVICE_NS}}}error") if fault.detail is not None else None

    def text(name: str) -> str | None:
        return error.findtext(f"{{{SERVICE_NS}}}{name}") if error is not None else None

    return {
        "faultcode": fault.code,
        "message": fault.message,
        "code": text("code"),
        "parameter": text("parameter"),
        "reason": text("reason"),
    }


def assert_wrong(fault: dict[str, str | None], parameter: str) -> None:
    assert (fault["faultcode"], fault["message"], fault["code"], fault["parameter"]) == (
        "SOAP-ENV:Client",
        "Wrong parameters",
        "invalid_parameters",
        parameter,
    )
    assert fault["reason"]


def assert_denied(fault: dict[str, str | None]) -> None:
    assert (fault["faultcode"], fault["message"], fault["code"]) == (
        "SOAP-ENV:Client",
        "Permission Denied",
        "permission_denied",
    )


def assert_unknown_user(fault: dict[str, str | None]) -> None:
    assert (fault["faultcode"], fault["message"], fault["code"], fault["parameter"]) == (
        "SOAP-ENV:Client",
        "Unknown user",
        "not_found",
        "userId",
    )


def raw(server: Server, operation: str, inner: str) -> httpx.Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" '
        f'xmlns="{SERVICE_NS}"><SOAP-ENV:Body><{operation}>{inner}</{operation}>'
        "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    return httpx.post(
        f"{server.base_url}/soap",
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=30,
    )
