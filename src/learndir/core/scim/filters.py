"""SCIM filters (RFC 7644 §3.4.2.2): parsed once into a small tree of our own, evaluated on
documents, and translated into SQL where the caller knows how."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from scim2_filter_parser import ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser
from sqlalchemy import ColumnElement, and_, not_, or_

from learndir.core.errors import DomainError, ErrorCode
from learndir.core.scim.attributes import Attribute, AttrRef, ResourceSchema, parse_datetime

Value: TypeAlias = str | int | float | bool | None

OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_ORDERING = frozenset({"gt", "ge", "lt", "le"})
_INSTANTS = _ORDERING | {"eq", "ne"}


@dataclass(frozen=True)
class Compare:
    path: AttrRef
    op: str
    value: Value


@dataclass(frozen=True)
class Present:
    path: AttrRef


@dataclass(frozen=True)
class And:
    a: Node
    b: Node


@dataclass(frozen=True)
class Or:
    a: Node
    b: Node


@dataclass(frozen=True)
class Not:
    x: Node


@dataclass(frozen=True)
class ValuePath:
    """Some element of the multi-valued complex `attr` satisfies `filter`, whose paths are
    `attr.sub`; `emails[type eq "work"].value eq "x"` becomes `emails[type eq "work" and
    value eq "x"]`, which means the same."""

    attr: AttrRef
    filter: Node


Node: TypeAlias = Compare | Present | And | Or | Not | ValuePath
Leaf: TypeAlias = Compare | Present | ValuePath
Condition: TypeAlias = tuple[ColumnElement[bool] | None, bool]

# Comparison values are swapped for placeholders before the library sees the text: its lexer
# drops the quotes of strings (so "true" and true look alike), reads one digit as a number and
# knows no escapes.
_TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"?|[()\[\]]|[^\s()\[\]"]+')
_PLACEHOLDER = "@{}"


def _error(code: ErrorCode, parameter: str, reason: str) -> DomainError:
    return DomainError(code, reason, parameter=parameter)


class _Parser:
    """One parse: the text, its extracted values and where errors are reported."""

    def __init__(self, schema: ResourceSchema, code: ErrorCode, parameter: str) -> None:
        self.schema = schema
        self.code = code
        self.parameter = parameter
        self.values: list[Value] = []

    def fail(self, reason: str) -> DomainError:
        return _error(self.code, self.parameter, reason)

    def substitute(self, text: str) -> str:
        out: list[str] = []
        previous = ""
        for match in _TOKEN.finditer(text):
            token = match.group()
            if token.isspace():
                out.append(token)
                continue
            if previous.casefold() in OPERATORS:
                out.append(f'"{_PLACEHOLDER.format(len(self.values))}"')
                self.values.append(self.literal(token))
            elif token.startswith('"'):
                raise self.fail(f"{token} follows '{previous}', which is not a comparison operator")
            else:
                out.append(token)
            previous = token
        return "".join(out)

    def literal(self, token: str) -> Value:
        if token.startswith('"'):
            try:
                decoded: str = json.loads(token)
            except ValueError:
                raise self.fail(f"the string {token} has no closing quote") from None
            return decoded
        lowered = token.casefold()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "null":
            return None
        try:
            number: int | float = json.loads(token)
        except ValueError:
            raise self.fail(
                f"{token} is not a value: quote strings, or use a number, true, false or null"
            ) from None
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise self.fail(f"{token} is not a value")
        return number

    def parse(self, text: str, suffix: str = "") -> Any:
        """The library's tree; `suffix` completes a PATCH path into a filter and is left out
        of error reasons."""
        if not text.strip():
            raise self.fail(f"the {self.parameter} is empty")
        substituted = self.substitute(text + suffix)
        try:
            return SCIMParser().parse(SCIMLexer().tokenize(substituted))
        except Exception as exc:  # the library raises ValueError, its own errors and others
            raise self.fail(self.describe(text, exc)) from None

    def describe(self, text: str, exc: Exception) -> str:
        token = getattr(exc, "args", ("",))[0]
        found = re.search(r"value='([^']*)'", str(token))
        if "Parsing error at: None" in str(token):
            if text.count("[") > text.count("]"):
                return f"'{text}' has no closing bracket"
            if text.count("(") > text.count(")"):
                return f"'{text}' has no closing parenthesis"
            return f"'{text}' ends before the expression is complete"
        if found:
            word = found.group(1)
            if len(word) == 2 and word.isalpha():
                return f"unexpected '{word}' in '{text}': is it an unknown operator?"
            return f"unexpected '{word}' in '{text}'"
        return f"'{text}' is not a valid {self.parameter} ({token})"

    def ref(self, path: Any, parent: AttrRef | None) -> AttrRef:
        """An AttrPath of the library resolved against the schema; inside brackets names are
        sub-attributes of `parent`."""
        name = str(path.attr_name)
        sub = path.sub_attr.value if path.sub_attr is not None else None
        if parent is not None:
            found = parent.attribute.sub(name)
            if path.uri is not None or sub is not None or found is None:
                full = f"{name}.{sub}" if sub else name
                raise self.fail(f"{full} is not a sub-attribute of {parent.text()}")
            return AttrRef(parent.urn, parent.attribute, found)
        text = name if sub is None else f"{name}.{sub}"
        if path.uri is not None:
            text = f"{path.uri}:{text}"
        ref = self.schema.resolve(text)
        if ref is None or ref.is_extension:
            raise self.fail(f"{text} is not an attribute of {self.schema.schema_name(None)}")
        return ref

    def multi_complex(self, path: Any) -> AttrRef:
        ref = self.ref(path, None)
        if ref.sub is not None or ref.attribute.type != "complex":
            raise self.fail(f"{ref.text()} is not a complex attribute and cannot take [filter]")
        return ref

    def node(self, tree: Any, parent: AttrRef | None = None) -> Node:
        if isinstance(tree, ast.Filter):
            if tree.namespace is not None:
                if parent is not None:
                    raise self.fail("filters in brackets cannot be nested")
                attr = self.multi_complex(tree.namespace)
                inner = ValuePath(attr, self.node(tree.expr, attr))
                return Not(inner) if tree.negated else inner
            node = self.node(tree.expr, parent)
            return Not(node) if tree.negated else node
        if isinstance(tree, ast.LogExpr):
            a, b = self.node(tree.expr1, parent), self.node(tree.expr2, parent)
            return And(a, b) if str(tree.op).casefold() == "and" else Or(a, b)
        if isinstance(tree, ast.AttrExpr):
            path = tree.attr_path
            if isinstance(path.attr_name, ast.Filter):
                # emails[type eq "work"].value eq "x"
                value_path = path.attr_name
                namespace = value_path.namespace
                sub_name = namespace.sub_attr.value
                namespace.sub_attr = None
                attr = self.multi_complex(namespace)
                condition = self.node(value_path.expr, attr)
                sub = attr.attribute.sub(sub_name)
                if sub is None:
                    raise self.fail(f"{sub_name} is not a sub-attribute of {attr.text()}")
                leaf = self.leaf(AttrRef(attr.urn, attr.attribute, sub), tree)
                return ValuePath(attr, And(condition, leaf))
            return self.leaf(self.ref(path, parent), tree)
        raise self.fail(f"unexpected {type(tree).__name__} in the filter")

    def leaf(self, ref: AttrRef, tree: Any) -> Compare | Present:
        op = str(tree.value).casefold()
        if op == "pr":
            return Present(ref)
        target = ref.target
        if op in _ORDERING and target.type in ("boolean", "complex", "binary"):
            raise self.fail(f"{ref.text()} is {target.type} and cannot be compared with {op}")
        if target.type == "complex" and ref.sub is None:
            # `emails eq "x"` compares the elements' value (RFC 7644 §3.4.2.2).
            value_sub = target.sub("value")
            if value_sub is None:
                raise self.fail(f"{ref.text()} is complex: compare one of its sub-attributes")
            ref = AttrRef(ref.urn, ref.attribute, value_sub)
        raw = str(tree.comp_value.value)
        index = int(raw[1:]) if raw.startswith("@") and raw[1:].isdigit() else -1
        if not 0 <= index < len(self.values):
            raise self.fail(f"cannot read the value compared with {ref.text()}")
        value = self.values[index]
        if op in ("co", "sw", "ew") and not isinstance(value, str):
            raise self.fail(f"{op} needs a string to compare {ref.text()} with")
        if value is not None and not _fits(value, ref.target):
            raise self.fail(f"{ref.text()} is {ref.target.type} and cannot equal {value!r}")
        if (
            op in _INSTANTS
            and ref.target.type == "dateTime"
            and isinstance(value, str)
            and parse_datetime(value) is None
        ):
            # Answering "nothing matches" would hide the client's mistake.
            raise self.fail(f"{ref.text()} is compared with {value!r}, not an xsd:dateTime")
        return Compare(ref, op, value)


def _fits(value: Value, attribute: Attribute) -> bool:
    """Whether a comparison value has the attribute's JSON type."""
    if isinstance(value, bool):
        return attribute.type == "boolean"
    if isinstance(value, int | float):
        return attribute.type in ("integer", "decimal")
    return attribute.type not in ("boolean", "integer", "decimal")


def parse_filter(text: str, schema: ResourceSchema) -> Node:
    """The filter of a request, resolved against `schema`; INVALID_FILTER says what is wrong."""
    parser = _Parser(schema, ErrorCode.INVALID_FILTER, "filter")
    return parser.node(parser.parse(text))


def parse_value_path(text: str, schema: ResourceSchema) -> tuple[AttrRef, Node]:
    """A PATCH path with brackets, `attr[filter]` or `attr[filter].sub`: the reference (with the
    sub-attribute, if any) and the element filter; INVALID_PATH when it is not one."""
    parser = _Parser(schema, ErrorCode.INVALID_PATH, "path")
    # The library parses paths as the left side of a comparison only.
    tree = parser.parse(text, " pr")
    expr = tree.expr if isinstance(tree, ast.Filter) and not tree.negated else None
    if not isinstance(expr, ast.AttrExpr) or not isinstance(expr.attr_path.attr_name, ast.Filter):
        raise parser.fail(f"'{text}' is not a path of the form attr[filter] or attr[filter].sub")
    value_path = expr.attr_path.attr_name
    namespace = value_path.namespace
    sub_name = namespace.sub_attr.value if namespace.sub_attr is not None else None
    namespace.sub_attr = None
    attr = parser.multi_complex(namespace)
    condition = parser.node(value_path.expr, attr)
    if sub_name is None:
        return attr, condition
    sub = attr.attribute.sub(sub_name)
    if sub is None:
        raise parser.fail(f"{sub_name} is not a sub-attribute of {attr.text()}")
    return AttrRef(attr.urn, attr.attribute, sub), condition


def _container(doc: Mapping[str, Any], ref: AttrRef) -> Any:
    if ref.urn is None:
        return doc.get(ref.name)
    extension = doc.get(ref.urn)
    return extension.get(ref.name) if isinstance(extension, Mapping) else None


def _values(doc: Mapping[str, Any], ref: AttrRef, element: Mapping[str, Any] | None) -> list[Any]:
    """Every value at `ref`, flattened; `element` is the current element inside brackets."""
    if element is not None:
        found = [element.get(ref.sub)] if ref.sub else []
    else:
        raw = _container(doc, ref)
        items = raw if isinstance(raw, list) else [raw]
        if ref.sub is None:
            found = items
        else:
            found = [item.get(ref.sub) for item in items if isinstance(item, Mapping)]
    flat: list[Any] = []
    for value in found:
        flat.extend(value if isinstance(value, list) else [value])
    return [value for value in flat if value is not None]


def _equal_or_order(actual: Any, expected: Value, op: str, attribute: Attribute) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return op == "eq" and actual is expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        left: Any = actual
        right: Any = expected
    elif isinstance(actual, str) and isinstance(expected, str):
        if attribute.type == "dateTime":
            left, right = parse_datetime(actual), parse_datetime(expected)
            if left is None or right is None:
                return False
        elif attribute.case_exact:
            left, right = actual, expected
        else:
            left, right = actual.casefold(), expected.casefold()
        if op == "co":
            return bool(right in left)
        if op == "sw":
            return bool(left.startswith(right))
        if op == "ew":
            return bool(left.endswith(right))
    else:
        return False
    if op == "eq":
        return bool(left == right)
    if op == "gt":
        return bool(left > right)
    if op == "ge":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return op == "le" and bool(left <= right)


def _compare(node: Compare, values: list[Any]) -> bool:
    if node.value is None:
        # `eq null` asks for an unassigned attribute, `ne null` for an assigned one.
        return (not values) if node.op == "eq" else bool(values) and node.op == "ne"
    if node.op == "ne":
        return not values or any(
            not _equal_or_order(value, node.value, "eq", node.path.target) for value in values
        )
    return any(_equal_or_order(value, node.value, node.op, node.path.target) for value in values)


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def _matches(node: Node, doc: Mapping[str, Any], element: Mapping[str, Any] | None) -> bool:
    if isinstance(node, And):
        return _matches(node.a, doc, element) and _matches(node.b, doc, element)
    if isinstance(node, Or):
        return _matches(node.a, doc, element) or _matches(node.b, doc, element)
    if isinstance(node, Not):
        return not _matches(node.x, doc, element)
    if isinstance(node, Present):
        return any(_present(value) for value in _values(doc, node.path, element))
    if isinstance(node, Compare):
        return _compare(node, _values(doc, node.path, element))
    elements = _values(doc, node.attr, None)
    return any(_matches(node.filter, doc, item) for item in elements if isinstance(item, Mapping))


def matches(node: Node, doc: Mapping[str, Any]) -> bool:
    """Whether a canonical document (extensions under their URN) satisfies the filter."""
    return _matches(node, doc, None)


def matches_element(node: Node, element: Mapping[str, Any]) -> bool:
    """Whether one element of a multi-valued complex attribute satisfies a bracket filter."""
    return _matches(node, {}, element)


def to_sql(node: Node, leaf: Callable[[Leaf], Condition]) -> Condition:
    """The filter as a SQL condition and whether it is exact; an inexact one selects a superset
    on which the caller runs `matches`, and None means every row is a candidate."""
    if isinstance(node, And):
        (a, a_exact), (b, b_exact) = to_sql(node.a, leaf), to_sql(node.b, leaf)
        if a is not None and b is not None:
            return and_(a, b), a_exact and b_exact
        return (a, False) if a is not None else (b, False)
    if isinstance(node, Or):
        (a, a_exact), (b, b_exact) = to_sql(node.a, leaf), to_sql(node.b, leaf)
        if a is not None and b is not None:
            return or_(a, b), a_exact and b_exact
        return None, False
    if isinstance(node, Not):
        inner, exact = to_sql(node.x, leaf)
        if inner is not None and exact:
            return not_(inner), True
        return None, False
    return leaf(node)
