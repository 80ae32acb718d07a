"""Departments: the visible tree with user counts per branch, and a department's page with its
rename, move, delete and add-a-sub-department forms. Every change is the core's
(core/departments.py), as over REST."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.datastructures import FormData

from learndir.api.console.form_text import check_form, shown
from learndir.api.console.web import Console, administrator, posted, text
from learndir.api.console.web import field_errors as _field_errors
from learndir.core import departments
from learndir.core.common import as_uuid_text
from learndir.core.departments import Department, DepartmentCount
from learndir.core.errors import DomainError, invalid, not_found
from learndir.core.roles import Permission

router = APIRouter()

# The core's parameter names -> the forms' field names.
_FIELDS = {"name": "name", "code": "code", "parentDepartmentId": "parent"}


def field_errors(exc: DomainError, fields: dict[str, str]) -> dict[str, str]:
    """The core's error by form field; one about the department itself concerns the form."""
    errors = _field_errors(exc, fields)
    if "departmentId" in errors:
        errors[""] = errors.pop("departmentId")
    return errors


@dataclass
class Node:
    """A department of the tree as the pages show it."""

    dept: Department
    count: DepartmentCount
    depth: int
    children: list[Node] = field(default_factory=list)


@dataclass
class Tree:
    roots: list[Node]
    nodes: dict[str, Node]

    def ancestors(self, dept: Department) -> list[Department]:
        """The visible departments above `dept`, from the top down."""
        result: list[Department] = []
        parent = dept.parent_id
        while parent is not None and parent in self.nodes:
            result.append(self.nodes[parent].dept)
            parent = self.nodes[parent].dept.parent_id
        return list(reversed(result))

    def in_order(self) -> list[Node]:
        """Every node in tree order (a parent, then its branch)."""
        result: list[Node] = []

        def walk(nodes: list[Node]) -> None:
            for node in nodes:
                result.append(node)
                walk(node.children)

        walk(self.roots)
        return result


def load_tree(console: Console) -> Tree:
    visible = departments.list_departments(console.db, console.actor)
    counts = departments.user_counts(console.db, console.actor)
    nodes = {d.id: Node(d, counts.get(d.id, DepartmentCount(0, 0)), 0) for d in visible}
    roots: list[Node] = []
    for dept in visible:  # tree order: a parent comes before its children
        node = nodes[dept.id]
        parent = nodes.get(dept.parent_id or "")
        if parent is None:
            roots.append(node)
        else:
            node.depth = parent.depth + 1
            parent.children.append(node)
    for node in nodes.values():
        node.children.sort(key=lambda n: n.dept.name.casefold())
    roots.sort(key=lambda n: n.dept.name.casefold())
    return Tree(roots, nodes)


def _tree_page(
    console: Console,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    tree = load_tree(console)
    return console.render(
        "departments.html",
        {
            "tree": tree,
            "errors": errors or {},
            "values": values or {},
            "can_manage": not console.actor.scope(Permission.MANAGE_DEPARTMENTS).is_empty,
        },
        status=status,
        section="departments",
        title="Departments",
    )


@router.get("/departments", include_in_schema=False)
def tree_page(console: Console = Depends(administrator)) -> Response:
    return _tree_page(console)


def _department_page(
    console: Console,
    department_id: str,
    *,
    status: int = 200,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
) -> Response:
    """The page of one department; `errors` and `values` by form (rename, move, delete, add)."""
    dept = departments.get_department(console.db, console.actor, department_id)
    tree = load_tree(console)
    node = tree.nodes.get(dept.id)
    if node is None:  # deleted meanwhile
        raise not_found("department", "departmentId")
    parents = [
        n for n in tree.in_order() if not n.dept.path.startswith(dept.path)
    ]  # not itself nor its branch
    context: dict[str, Any] = {
        "dept": dept,
        "node": node,
        "crumbs": tree.ancestors(dept),
        "parent": tree.nodes[dept.parent_id].dept if dept.parent_id in tree.nodes else None,
        "parents": parents,
        "form_errors": errors or {},
        "form_values": values or {},
        "can_manage": console.actor.scope(Permission.MANAGE_DEPARTMENTS).covers(dept.path),
    }
    return console.render(
        "department.html",
        context,
        status=status,
        section="departments",
        title=dept.name,
    )


@router.get("/departments/{department_id}", include_in_schema=False)
def department_page(department_id: str, console: Console = Depends(administrator)) -> Response:
    return _department_page(console, department_id)


@router.post("/departments", include_in_schema=False)
def create(form: FormData = Depends(posted), console: Console = Depends(administrator)) -> Response:
    name, code, parent = text(form, "name"), text(form, "code"), text(form, "parent")
    values = {"name": shown(name), "code": shown(code), "parent": shown(parent)}
    try:
        check_form(form)
        new_id = departments.create_department(
            console.db, console.actor, name, parent or None, code or None
        )
    except DomainError as exc:
        errors = field_errors(exc, _FIELDS)
        if text(form, "back") == "department" and as_uuid_text(parent):
            with contextlib.suppress(DomainError):  # not a department: the tree's form says so
                return _department_page(
                    console, parent, status=422, errors={"add": errors}, values={"add": values}
                )
        return _tree_page(console, status=422, errors=errors, values=values)
    return console.redirect(f"/departments/{new_id}", f"Department {name} has been created.")


@router.post("/departments/{department_id}", include_in_schema=False)
def rename(
    department_id: str,
    form: FormData = Depends(posted),
    console: Console = Depends(administrator),
) -> Response:
    name, code = text(form, "name"), text(form, "code")
    try:
        check_form(form)
        departments.update_department(
            console.db, console.actor, department_id, name=name, code=code
        )
    except DomainError as exc:
        return _department_page(
            console,
            department_id,
            status=422,
            errors={"rename": field_errors(exc, _FIELDS)},
            values={"rename": {"name": shown(name), "code": shown(code)}},
        )
    return console.redirect(f"/departments/{department_id}", "The department has been saved.")


@router.post("/departments/{department_id}/move", include_in_schema=False)
def move(
    department_id: str,
    form: FormData = Depends(posted),
    console: Console = Depends(administrator),
) -> Response:
    parent = text(form, "parent")
    dept = departments.get_department(console.db, console.actor, department_id)
    if parent and parent == dept.parent_id:
        return console.redirect(f"/departments/{dept.id}", "The department is there already.")
    try:
        check_form(form)
        if not parent:
            raise invalid("parentDepartmentId", "choose the new parent department")
        departments.update_department(console.db, console.actor, department_id, parent_id=parent)
    except DomainError as exc:
        return _department_page(
            console,
            department_id,
            status=422,
            errors={"move": field_errors(exc, _FIELDS)},
            values={"move": {"parent": shown(parent)}},
        )
    return console.redirect(f"/departments/{department_id}", "The department has been moved.")


@router.post("/departments/{department_id}/delete", include_in_schema=False)
def delete(
    department_id: str,
    form: FormData = Depends(posted),
    console: Console = Depends(administrator),
) -> Response:
    dept = departments.get_department(console.db, console.actor, department_id)
    try:
        departments.delete_department(console.db, console.actor, dept.id)
    except DomainError as exc:
        return _department_page(
            console, dept.id, status=422, errors={"delete": field_errors(exc, _FIELDS)}
        )
    back = f"/departments/{dept.parent_id}" if dept.parent_id else "/departments"
    return console.redirect(back, f"Department {dept.name} has been deleted.")
