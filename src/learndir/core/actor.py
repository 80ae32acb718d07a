"""Who is acting: the authenticated user, their account and what their roles let them touch."""

from __future__ import annotations

from dataclasses import dataclass

from learndir.core.errors import denied
from learndir.core.roles import ACCOUNT_WIDE, Permission, Role, RoleKind


@dataclass(frozen=True)
class AccountInfo:
    id: str
    url: str
    name: str
    seat_limit: int | None
    password_min_length: int
    settings_version: int = 1


@dataclass(frozen=True)
class Grant:
    """One role of the actor, with the materialised paths of the departments it manages."""

    role: Role
    department_paths: tuple[str, ...]


@dataclass(frozen=True)
class Scope:
    """Where a permission reaches: the whole account, or a set of department subtrees."""

    account_wide: bool
    paths: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not self.account_wide and not self.paths

    def covers(self, department_path: str) -> bool:
        return self.account_wide or any(department_path.startswith(p) for p in self.paths)


@dataclass(frozen=True)
class Actor:
    user_id: str
    login: str
    account: AccountInfo
    grants: tuple[Grant, ...]

    @property
    def account_id(self) -> str:
        return self.account.id

    @property
    def administers_account(self) -> bool:
        """The account owner and account administrators: they manage the account itself
        (webhooks, API keys, sign-in locks, the audit trail)."""
        return any(g.role.kind in ACCOUNT_WIDE for g in self.grants)

    def require_account_admin(self, doing: str) -> None:
        """Permission Denied unless the actor administers the account; `doing` says what only
        they may do ("manage webhooks")."""
        if not self.administers_account:
            raise denied(f"only the account owner and account administrators {doing}")

    @property
    def manages_users(self) -> bool:
        """Whether the actor may add or change users somewhere (the account, or departments):
        who may import files and act through a SCIM token."""
        return not (
            self.scope(Permission.ADD_USERS).is_empty and self.scope(Permission.EDIT_USERS).is_empty
        )

    @property
    def is_learner_only(self) -> bool:
        return all(g.role.kind is RoleKind.LEARNER for g in self.grants)

    def scope(self, permission: Permission) -> Scope:
        account_wide = False
        paths: list[str] = []
        for grant in self.grants:
            if permission not in grant.role.permissions:
                continue
            if grant.role.is_account_wide:
                account_wide = True
            elif grant.role.is_department_scoped:
                paths.extend(grant.department_paths)
        return Scope(account_wide=account_wide, paths=tuple(paths))

    def visible_scope(self) -> Scope:
        """Where the actor may look at the directory: every department any role reaches."""
        account_wide = any(g.role.is_account_wide for g in self.grants)
        paths = tuple(p for g in self.grants for p in g.department_paths)
        return Scope(account_wide=account_wide, paths=paths)

    def permissions_within_departments(self) -> frozenset[Permission]:
        """Rights the actor holds at least somewhere: a role it grants may not exceed them."""
        result: set[Permission] = set()
        for grant in self.grants:
            result |= grant.role.permissions
        return frozenset(result)
