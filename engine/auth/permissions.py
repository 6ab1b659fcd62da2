"""Who may do what in a workspace: one role table, one scope map, one `authorize` for users and keys.

Roles rank owner > admin > member > viewer; each role holds every permission of the roles below it.
An API key acts with its owner's role *and* must carry the scope for the action, so a key can
never do more than the person who made it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from types import MappingProxyType

from engine.auth.api_key_tokens import SCOPES, scope_allows
from engine.errors import Forbidden, ValidationFailed


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Action(StrEnum):
    LINK_READ = "link.read"
    LINK_CREATE = "link.create"
    LINK_UPDATE = "link.update"
    LINK_DELETE = "link.delete"
    ANALYTICS_READ = "analytics.read"
    DOMAIN_READ = "domain.read"
    DOMAIN_MANAGE = "domain.manage"
    TAG_MANAGE = "tag.manage"
    QR_MANAGE = "qr.manage"
    BIO_MANAGE = "bio.manage"
    WEBHOOK_READ = "webhook.read"
    WEBHOOK_MANAGE = "webhook.manage"
    APIKEY_MANAGE = "apikey.manage"  # one's own keys
    APIKEY_MANAGE_ALL = "apikey.manage_all"  # anyone's keys in the workspace (revoke a leaked key)
    MEMBER_READ = "member.read"
    MEMBER_INVITE = "member.invite"
    MEMBER_REMOVE = "member.remove"
    MEMBER_CHANGE_ROLE = "member.change_role"
    WORKSPACE_UPDATE = "workspace.update"
    WORKSPACE_DELETE = "workspace.delete"
    WORKSPACE_TRANSFER = "workspace.transfer"
    BILLING_MANAGE = "billing.manage"
    AUDIT_READ = "audit.read"


_VIEWER = frozenset(
    {Action.LINK_READ, Action.ANALYTICS_READ, Action.DOMAIN_READ, Action.MEMBER_READ, Action.APIKEY_MANAGE}
)
_MEMBER = _VIEWER | {
    Action.LINK_CREATE,
    Action.LINK_UPDATE,
    Action.LINK_DELETE,
    Action.TAG_MANAGE,
    Action.QR_MANAGE,
    Action.BIO_MANAGE,
}
_ADMIN = _MEMBER | {
    Action.DOMAIN_MANAGE,
    Action.WEBHOOK_READ,
    Action.WEBHOOK_MANAGE,
    Action.APIKEY_MANAGE_ALL,
    Action.MEMBER_INVITE,
    Action.MEMBER_REMOVE,
    Action.MEMBER_CHANGE_ROLE,
    Action.WORKSPACE_UPDATE,
    Action.AUDIT_READ,
}
_OWNER = _ADMIN | {Action.WORKSPACE_DELETE, Action.WORKSPACE_TRANSFER, Action.BILLING_MANAGE}

PERMISSIONS: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {Role.VIEWER: _VIEWER, Role.MEMBER: _MEMBER, Role.ADMIN: _ADMIN, Role.OWNER: _OWNER}
)

# The API key scope an action needs. None: only an interactive session may do it. Keys can't mint
# keys (a leaked key must not be able to persist itself), delete or give away the workspace.
SCOPE_FOR_ACTION: Mapping[Action, str | None] = MappingProxyType(
    {
        Action.LINK_READ: "links:read",
        Action.LINK_CREATE: "links:write",
        Action.LINK_UPDATE: "links:write",
        Action.LINK_DELETE: "links:write",
        Action.ANALYTICS_READ: "analytics:read",
        Action.DOMAIN_READ: "domains:read",
        Action.DOMAIN_MANAGE: "domains:write",
        Action.TAG_MANAGE: "links:write",
        Action.QR_MANAGE: "links:write",
        Action.BIO_MANAGE: "links:write",
        Action.WEBHOOK_READ: "webhooks:read",
        Action.WEBHOOK_MANAGE: "webhooks:write",
        Action.APIKEY_MANAGE: None,
        Action.APIKEY_MANAGE_ALL: None,
        Action.MEMBER_READ: "workspace:read",
        Action.MEMBER_INVITE: "workspace:admin",
        Action.MEMBER_REMOVE: "workspace:admin",
        Action.MEMBER_CHANGE_ROLE: "workspace:admin",
        Action.WORKSPACE_UPDATE: "workspace:admin",
        Action.WORKSPACE_DELETE: None,
        Action.WORKSPACE_TRANSFER: None,
        Action.BILLING_MANAGE: "billing:admin",
        Action.AUDIT_READ: "workspace:admin",
    }
)


def parse_role(value: str) -> Role:
    """A stored or submitted role string as a Role; ValidationFailed(field="role") otherwise."""
    try:
        return Role(value)
    except ValueError:
        raise ValidationFailed(f"unknown role {value!r}", field="role") from None


def can(role: Role, action: Action) -> bool:
    return action in PERMISSIONS[role]


def require(role: Role, action: Action) -> None:
    if not can(role, action):
        raise Forbidden(f"role {role} may not {action}")


def authorize(role: Role, scopes: Collection[str] | None, action: Action) -> None:
    """Raise Forbidden unless `role` may do `action` and, for an API key (`scopes` not None), the
    key's scopes cover it. Users signed in with a session pass `scopes=None`."""
    require(role, action)
    if scopes is None:
        return
    needed = SCOPE_FOR_ACTION[action]
    if needed is None:
        raise Forbidden(f"{action} requires a signed-in session; API keys cannot do it")
    if not scope_allows(scopes, needed):
        raise Forbidden(f"API key lacks the {needed} scope needed for {action}")


def grantable_scopes(role: Role) -> frozenset[str]:
    """The scopes `role` may put on an API key: those whose every action (including the actions
    of the narrower scopes it implies) the role may do itself. So `links:write` needs a member,
    `workspace:admin` an admin, and `billing:admin` the owner: nobody mints a key that can do more
    than they can."""
    return frozenset(
        scope
        for scope in SCOPES
        if all(
            can(role, action)
            for action, needed in SCOPE_FOR_ACTION.items()
            if needed is not None and scope_allows((scope,), needed)
        )
    )


def check_grant(role: Role, scopes: Collection[str]) -> None:
    """Forbidden(field="scopes") unless `role` may grant every one of `scopes`."""
    beyond = sorted(set(scopes) - grantable_scopes(role))
    if beyond:
        raise Forbidden(f"a {role} may not grant the scope(s) {', '.join(beyond)}", field="scopes")


def can_assign_role(actor_role: Role, target_current_role: Role, new_role: Role) -> bool:
    """Whether `actor_role` may change a member from `target_current_role` to `new_role`.

    Nobody assigns or removes the owner role here: ownership moves only through
    workspace.transfer (owner only), so a workspace always has exactly one owner.
    """
    return (
        can(actor_role, Action.MEMBER_CHANGE_ROLE)
        and target_current_role is not Role.OWNER
        and new_role is not Role.OWNER
    )


def can_remove_member(actor_role: Role, target_role: Role) -> bool:
    """Admins and the owner remove anyone but the owner (who must transfer ownership first)."""
    return can(actor_role, Action.MEMBER_REMOVE) and target_role is not Role.OWNER
