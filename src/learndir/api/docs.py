"""What a person finds at the service's address: a home page, learndir's own OpenAPI document
(`/openapi.json`) and interactive docs (`/docs`), every asset served from the installed package
so that an install without Internet access shows them whole."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from swagger_ui_bundle import swagger_ui_path

import learndir
from learndir.api.ispring_rest.wire import to_json

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
ASSETS = "/docs/assets"

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))


@functools.cache
def openapi_document() -> dict[str, Any]:
    """learndir's OpenAPI document: the vendor's paths and shapes, corrected where real clients
    showed what the service answers, plus learndir's own additions."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(OPENAPI_PATH.read_text(encoding="utf-8"), loader)
    document["info"]["version"] = learndir.__version__
    return document


@functools.cache
def _openapi_bytes() -> bytes:
    return to_json(openapi_document())


def install(app: FastAPI) -> None:
    """The routes of this module and the Swagger UI assets."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")


def _base(request: Request) -> str:
    """The path the service is reached under (a prefix such as /api/v2 included)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/", include_in_schema=False)
def home(request: Request) -> HTMLResponse:
    base = _base(request)
    return templates.TemplateResponse(
        request,
        "home.html",
        {
            "version": learndir.__version__,
            "docs": f"{base}/docs",
            "openapi": f"{base}/openapi.json",
            "wsdl": f"{base}/soap?wsdl",
            "health": f"{base}/health",
        },
    )


@router.get("/openapi.json", include_in_schema=False)
def openapi_json() -> Response:
    return Response(_openapi_bytes(), media_type="application/json")


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    base = _base(request)
    return get_swagger_ui_html(
        openapi_url=f"{base}/openapi.json",
        title="learndir API",
        swagger_js_url=f"{base}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{base}{ASSETS}/favicon-32x32.png",
        # No call to the public online validator: self-hosted installs are often offline.
        swagger_ui_parameters={"validatorUrl": None},
    )
