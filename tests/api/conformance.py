"""Support for the schemathesis conformance run: learndir's own OpenAPI document (the one it
serves at /openapi.json), reading XML answers into data shaped as the document's schemas (so
schemathesis validates XML too), and the wire rules every answer must keep whatever its status.

The XML reading follows the document's `xml` annotations (item names, wrapped arrays); a list
may come wrapped in an element named after its property or as repeated items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import schemathesis
import yaml
from lxml import etree

from learndir.api.docs import OPENAPI_PATH

SPEC_PATH = OPENAPI_PATH
RAW: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
# The vendor's document, as published: learndir's must describe every operation it has.
VENDOR_SPEC_PATH = (
    Path(__file__).resolve().parent / "openapi" / "ispring-learn-rest-users-openapi.yaml"
)
# The iSpring operations; they keep the iSpring wire rules (XML or JSON, <response> roots).
TAGS = [
    "user",
    "department",
    "departments",
    "group",
    "role",
    "token",
    "webhook",
    "apiKey",
    "signin",
]
ERROR_SCHEMA: dict[str, Any] = RAW["components"]["schemas"]["ErrorResponse"]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a reference (or an allOf of one schema, which carries its own XML name)
    stands for."""
    while "$ref" in schema or len(schema.get("allOf", ())) == 1:
        if "allOf" in schema:
            schema = schema["allOf"][0]
            continue
        node: Any = RAW
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def response_definition(path: str, method: str, status: int) -> dict[str, Any] | None:
    """The documented response of an operation for a status code, references resolved."""
    operation = RAW["paths"][path][method.lower()]
    found = operation["responses"].get(str(status))
    return resolve(found) if found is not None else None


def documented_schema(path: str, method: str, status: int, media: str) -> dict[str, Any] | None:
    definition = response_definition(path, method, status)
    if definition is None:
        return None
    content = definition.get("content") or {}
    entry = content.get(media)
    return entry.get("schema") if entry else None


def schema_problems(data: Any, schema_name: str) -> list[str]:
    """Violations of `#/components/schemas/<schema_name>` by `data`."""
    validator = jsonschema_rs.Draft4Validator(
        {"components": RAW["components"], "$ref": f"#/components/schemas/{schema_name}"}
    )
    return [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(data)]


# ---- XML -> data ---------------------------------------------------------------------------


def _kind(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else None


def _scalar(element: etree._Element, kind: str | None) -> Any:
    text = element.text or ""
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    return text


def _generic(element: etree._Element) -> Any:
    """An element with no schema to follow: text, or a map of its children."""
    children = list(element)
    if not children:
        return element.text or ""
    return {child.tag: _generic(child) for child in children}


def _item_name(items: dict[str, Any], default: str) -> str:
    name = resolve(items).get("xml", {}).get("name") or items.get("xml", {}).get("name")
    return str(name or default)


def element_to_data(element: etree._Element, schema: dict[str, Any]) -> Any:
    schema = resolve(schema)
    kind = _kind(schema)
    if kind == "array":
        items = schema.get("items", {})
        return [element_to_data(child, items) for child in element]
    if kind == "object":
        return _object(element, schema)
    return _scalar(element, kind)


def _object(element: etree._Element, schema: dict[str, Any]) -> dict[str, Any]:
    children = list(element)
    used: set[int] = set()
    out: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        resolved = resolve(prop)
        if _kind(resolved) == "array":
            items = resolved.get("items", {})
            holder = [c for c in children if c.tag == name]
            if holder:
                used.update(id(c) for c in holder)
                out[name] = [element_to_data(c, items) for c in holder[0]]
                continue
            item = _item_name(items, name)
            found = [c for c in children if c.tag == item]
            used.update(id(c) for c in found)
            out[name] = [element_to_data(c, items) for c in found]
            continue
        match = next((c for c in children if c.tag == name), None)
        if match is not None:
            used.add(id(match))
            out[name] = element_to_data(match, resolved)
    for child in children:
        if id(child) not in used and isinstance(child.tag, str):
            out.setdefault(child.tag, _generic(child))
    return out


def xml_to_data(body: bytes, schema: dict[str, Any] | None) -> Any:
    """A `<response>` document as the data its schema describes."""
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    if root.tag != "response":
        raise ValueError(f"the XML root is <{root.tag}>, not <response>")
    if schema is None:
        return _generic(root)
    schema = resolve(schema)
    props = schema.get("properties") or {}
    if _kind(schema) == "object" and set(props) == {"response"}:
        return {"response": element_to_data(root, props["response"])}
    return element_to_data(root, schema)


@schemathesis.deserializer("application/xml", "text/xml")
def _deserialize_xml(
    ctx: schemathesis.DeserializationContext, response: schemathesis.Response
) -> Any:
    operation = ctx.operation
    schema = documented_schema(
        operation.path, operation.method, response.status_code, "application/xml"
    )
    return xml_to_data(response.content, schema)


# ---- wire rules every answer keeps ---------------------------------------------------------


def media_type(headers: Any) -> str:
    """The media type of a response, from httpx/requests headers or schemathesis' lists."""
    for key, value in headers.items():
        if key.lower() == "content-type":
            text = value[0] if isinstance(value, list) else value
            return str(text).split(";")[0].strip().lower()
    return ""


def wire_problems(
    path: str, method: str, status: int, headers: Any, body: bytes, want_json: bool
) -> list[str]:
    """What breaks the wire rules: the format asked for, `<response>` root, empty bodies where
    the document has none, and the error shape (`code`, `message`) on every 4xx."""
    problems: list[str] = []
    definition = response_definition(path, method, status)
    if status >= 500:
        return [f"server error {status}"]
    if definition is not None and not definition.get("content") and 200 <= status < 300:
        if body.strip():
            problems.append(
                f"{status} is documented without content, but the body is {body[:200]!r}"
            )
        return problems
    if not body.strip():
        if status >= 400 or definition is not None:
            problems.append(f"{status} with an empty body")
        return problems
    mtype = media_type(headers)
    data: Any = None
    if want_json:
        if mtype != "application/json":
            problems.append(f"asked for JSON, got content-type {mtype!r}")
            return problems
        try:
            data = json.loads(body)
        except ValueError as exc:
            return [f"malformed JSON: {exc}"]
    else:
        if mtype not in ("application/xml", "text/xml"):
            problems.append(f"asked for XML, got content-type {mtype!r}")
            return problems
        try:
            data = xml_to_data(body, ERROR_SCHEMA if status >= 400 else None)
        except (etree.XMLSyntaxError, ValueError) as exc:
            return [f"malformed XML answer: {exc}"]
    if status >= 400:
        if not isinstance(data, dict):
            problems.append(f"error body is not an object: {data!r}")
        else:
            if not isinstance(data.get("code"), int) or data.get("code") != status:
                problems.append(f"error code {data.get('code')!r} is not the status {status}")
            if not isinstance(data.get("message"), str) or not data["message"]:
                problems.append(f"error without a message: {data!r}")
    return problems
