"""What a person finds at the service's address: a home page, learndir's own OpenAPI document
(`/openapi.json`) and interactive docs (`/docs`), every asset served from the installed package
so that an install without Internet access shows them whole."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from swagger_ui_bundle import swagger_ui_path

import learndir
from learndir.api.ispring_rest.wire import to_json

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
# Swagger UI's files, and learndir's own (the pages' style sheet, the docs page's start-up).
ASSETS = "/docs/assets"
OWN_ASSETS = "/assets"
OWN_ASSETS_PATH = Path(__file__).with_name("static")

# Swagger UI runs its own script and fetches the document; its style sheet draws icons from
# data: URLs. Nothing inline, nothing from elsewhere.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

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
    app.mount(OWN_ASSETS, StaticFiles(directory=str(OWN_ASSETS_PATH)), name="assets")


def base_path(request: Request) -> str:
    """The path the service is reached under (a prefix such as /api/v2 included)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/about", include_in_schema=False)
def home(request: Request) -> HTMLResponse:
    base = base_path(request)
    return templates.TemplateResponse(
        request,
        "home.html",
        {
            "version": learndir.__version__,
            "docs": f"{base}/docs",
            "openapi": f"{base}/openapi.json",
            "wsdl": f"{base}/soap?wsdl",
            "health": f"{base}/health",
            "assets": f"{base}{OWN_ASSETS}",
            "console": f"{base}/console",
        },
    )


@router.get("/openapi.json", include_in_schema=False)
def openapi_json() -> Response:
    return Response(_openapi_bytes(), media_type="application/json")


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    base = base_path(request)
    return templates.TemplateResponse(
        request,
        "docs.html",
        {
            "openapi": f"{base}/openapi.json",
            "swagger": f"{base}{ASSETS}",
            "assets": f"{base}{OWN_ASSETS}",
        },
        headers={"Content-Security-Policy": DOCS_POLICY},
    )
