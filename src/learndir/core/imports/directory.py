"""What the rows of an import are resolved against, read once per job: the account's profile
fields and roles, its departments (by id, code and path of names) and its groups (by id and
name). An import of 50,000 rows names the same ten departments 50,000 times; it must not ask
the database each time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from learndir.core import departments as departments_repo
from learndir.core.account_settings import AccountSettings, account_settings
from learndir.core.actor import Actor
from learndir.core.common import as_uuid_text, fold
from learndir.core.departments import Department
from learndir.core.errors import invalid
from learndir.core.imports.cells import list_cell
from learndir.core.roles import ROLE_SPELLINGS, Role, RoleKind
from learndir.db.schema import groups

# A department path in a cell: the names from the top down, separated by "/".
PATH_SEPARATOR = "/"


def path_key(names: Iterable[str]) -> str:
    return PATH_SEPARATOR.join(fold(n) for n in names)


@dataclass(frozen=True)
class GroupRef:
    id: str
    name: str
    is_smart: bool


@dataclass
class Directory:
    settings: AccountSettings
    root: Department
    by_id: dict[str, Department] = field(default_factory=dict)
    by_code: dict[str, Department] = field(default_factory=dict)
    by_path: dict[str, Department] = field(default_factory=dict)
    groups_by_id: dict[str, GroupRef] = field(default_factory=dict)
    # Group names, case-folded; a name two groups share maps to both (and is ambiguous).
    groups_by_name: dict[str, list[GroupRef]] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection, actor: Actor) -> Directory:
        everything = departments_repo.all_in_account(conn, actor.account_id)
        root = next(d for d in everything if d.parent_id is None)
        directory = cls(settings=account_settings(conn, actor.account), root=root)
        for dept in everything:
            directory.add_department(dept)
        for row in conn.execute(
            select(groups.c.id, groups.c.name, groups.c.is_smart).where(
                groups.c.account_id == actor.account_id
            )
        ):
            ref = GroupRef(row.id, row.name, bool(row.is_smart))
            directory.groups_by_id[ref.id] = ref
            directory.groups_by_name.setdefault(fold(ref.name), []).append(ref)
        return directory

    def add_department(self, dept: Department) -> None:
        """Known from now on (loaded, or created by this import)."""
        self.by_id[dept.id] = dept
        if dept.code:
            self.by_code[fold(dept.code)] = dept
        self.by_path[path_key(self.names_of(dept))] = dept

    def names_of(self, dept: Department) -> list[str]:
        """The names from the account's top department down to `dept`."""
        ids = [i for i in dept.path.split("/") if i]
        names = []
        for dept_id in ids:
            known = self.by_id.get(dept_id)
            names.append(known.name if known is not None else dept_id)
        return names

    def department_path(self, dept: Department) -> str:
        return PATH_SEPARATOR.join(self.names_of(dept))

    # ---- resolving cells -------------------------------------------------------------------

    def department_by_id(self, text: str, column: str) -> Department:
        dept = self.by_id.get(as_uuid_text(text) or "")
        if dept is None:
            raise invalid(column, f"no department with the id {text!r} in this account")
        return dept

    def department_by_code(self, text: str, column: str) -> Department | None:
        return self.by_code.get(fold(text))

    def department_by_path(self, text: str, column: str) -> Department:
        names = [n.strip() for n in text.split(PATH_SEPARATOR) if n.strip()]
        dept = self.by_path.get(path_key(names))
        if dept is None and names and fold(names[0]) != fold(self.root.name):
            # The top department may be left out: "Sales/East" under "Acme".
            dept = self.by_path.get(path_key([self.root.name, *names]))
        if dept is None:
            raise invalid(column, f"no department {text!r} in this account")
        return dept

    def department_anyhow(self, text: str, column: str) -> Department:
        """A department named by its id, code or path (the Managed departments column)."""
        if as_uuid_text(text) is not None and as_uuid_text(text) in self.by_id:
            return self.by_id[as_uuid_text(text) or ""]
        by_code = self.department_by_code(text, column)
        if by_code is not None:
            return by_code
        return self.department_by_path(text, column)

    def group(self, text: str, column: str) -> GroupRef:
        found = self.groups_by_name.get(fold(text), [])
        if not found:
            by_id = self.groups_by_id.get(as_uuid_text(text) or "")
            if by_id is not None:
                return by_id
        if len(found) > 1:
            raise invalid(column, f"{len(found)} groups are called {text!r}; give the group's id")
        if not found:
            raise invalid(column, f"no group {text!r} in this account")
        return found[0]

    def groups_in(self, text: str, column: str) -> list[GroupRef]:
        """The groups a cell names: one group's name or id, or several separated by ; or ,"""
        text = text.strip()
        if not text:
            return []
        if fold(text) in self.groups_by_name or as_uuid_text(text) in self.groups_by_id:
            return [self.group(text, column)]
        return [self.group(item, column) for item in list_cell(text)]

    def roles_in(self, text: str, column: str) -> list[Role]:
        """The roles a Role cell names ("Learner; Department Administrator"), by the role's
        name or an API spelling (department_administrator)."""
        found: list[Role] = []
        for item in list_cell(text):
            role = self._role(item, column)
            if role not in found:
                found.append(role)
        return found

    def _role(self, text: str, column: str) -> Role:
        key = fold(text)
        by_name = [r for r in self.settings.roles if fold(r.name) == key]
        if len(by_name) == 1:
            return by_name[0]
        kind = ROLE_SPELLINGS.get("_".join(key.replace("-", " ").split()))
        if kind is not None and kind is not RoleKind.CUSTOM:
            for role in self.settings.roles:
                if role.kind is kind:
                    return role
        raise invalid(column, f"no role {text!r} in this account")
