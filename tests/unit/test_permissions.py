"""The role-by-action matrix, scope mapping and role-change rules, against tables written out here."""

from __future__ import annotations

import itertools

import pytest

from engine.auth.api_key_tokens import SCOPES
from engine.auth.permissions import (
    PERMISSIONS,
    SCOPE_FOR_ACTION,
    Action,
    Role,
    authorize,
    can,
    can_assign_role,
    can_remove_member,
    parse_role,
    require,
)
from engine.errors import Forbidden, ValidationFailed

# Written by hand, not derived from the implementation. Columns: owner admin member viewer.
MATRIX = """
link.read           Y Y Y Y
link.create         Y Y Y -
link.update         Y Y Y -
link.delete         Y Y Y -
analytics.read      Y Y Y Y
domain.read         Y Y Y Y
domain.manage       Y Y - -
tag.manage          Y Y Y -
qr.manage           Y Y Y -
bio.manage          Y Y Y -
webhook.read        Y Y - -
webhook.manage      Y Y - -
apikey.manage       Y Y Y Y
apikey.manage_all   Y Y - -
member.read         Y Y Y Y
member.invite       Y Y - -
member.remove       Y Y - -
member.change_role  Y Y - -
workspace.update    Y Y - -
workspace.delete    Y - - -
workspace.transfer  Y - - -
billing.manage      Y - - -
audit.read          Y Y - -
"""
ROLES_IN_COLUMN_ORDER = ["owner", "admin", "member", "viewer"]
EXPECTED = {
    (role, action): flag == "Y"
    for action, *flags in (line.split() for line in MATRIX.strip().splitlines())
    for role, flag in zip(ROLES_IN_COLUMN_ORDER, flags, strict=True)
}

# Written by hand. "-" means an API key can never do it, whatever its scopes.
EXPECTED_SCOPES = {
    "link.read": "links:read",
    "link.create": "links:write",
    "link.update": "links:write",
    "link.delete": "links:write",
    "analytics.read": "analytics:read",
    "domain.read": "domains:read",
    "domain.manage": "domains:write",
    "tag.manage": "links:write",
    "qr.manage": "links:write",
    "bio.manage": "links:write",
    "webhook.read": "webhooks:read",
    "webhook.manage": "webhooks:write",
    "apikey.manage": "-",
    "apikey.manage_all": "-",
    "member.read": "workspace:read",
    "member.invite": "workspace:admin",
    "member.remove": "workspace:admin",
    "member.change_role": "workspace:admin",
    "workspace.update": "workspace:admin",
    "workspace.delete": "-",
    "workspace.transfer": "-",
    "billing.manage": "billing:admin",
    "audit.read": "workspace:admin",
}


def test_matrix_covers_every_role_and_action() -> None:
    assert {a for _, a in EXPECTED} == {a.value for a in Action}
    assert {r for r, _ in EXPECTED} == {r.value for r in Role}
    assert set(PERMISSIONS) == set(Role)


@pytest.mark.parametrize(("role", "action"), sorted(EXPECTED))
def test_permission_matrix(role: str, action: str) -> None:
    expected = EXPECTED[(role, action)]
    assert can(Role(role), Action(action)) is expected
    if expected:
        require(Role(role), Action(action))
        authorize(Role(role), None, Action(action))
    else:
        with pytest.raises(Forbidden):
            require(Role(role), Action(action))
        with pytest.raises(Forbidden):
            authorize(Role(role), None, Action(action))


def test_roles_are_strictly_nested() -> None:
    ranked = [Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER]
    for lower, higher in itertools.pairwise(ranked):
        assert PERMISSIONS[lower] < PERMISSIONS[higher]


def test_scope_map() -> None:
    assert {a.value: s or "-" for a, s in SCOPE_FOR_ACTION.items()} == EXPECTED_SCOPES
    assert {s for s in SCOPE_FOR_ACTION.values() if s} <= SCOPES


@pytest.mark.parametrize(
    ("role", "scopes", "action", "allowed"),
    [
        # A key with the right scope acts within its owner's role.
        ("member", ["links:write"], "link.create", True),
        ("member", ["links:write"], "link.read", True),
        ("member", ["links:read"], "link.create", False),
        ("member", [], "link.read", False),
        # The scope never lifts a key above its owner's role.
        ("viewer", ["links:write"], "link.create", False),
        ("member", ["webhooks:write"], "webhook.manage", False),
        ("member", ["workspace:admin"], "member.invite", False),
        ("admin", ["webhooks:write"], "webhook.manage", True),
        ("admin", ["workspace:admin"], "member.invite", True),
        ("admin", ["workspace:admin"], "link.delete", True),
        ("admin", ["workspace:admin"], "audit.read", True),
        # workspace:admin does not include billing.
        ("owner", ["workspace:admin"], "billing.manage", False),
        ("owner", ["billing:admin"], "billing.manage", True),
        ("admin", ["billing:admin"], "billing.manage", False),
        # Session-only actions, whatever the scopes.
        ("owner", sorted(SCOPES), "apikey.manage", False),
        ("owner", sorted(SCOPES), "apikey.manage_all", False),
        ("owner", sorted(SCOPES), "workspace.delete", False),
        ("owner", sorted(SCOPES), "workspace.transfer", False),
        # The same actions from a signed-in session.
        ("owner", None, "workspace.delete", True),
        ("viewer", None, "apikey.manage", True),
    ],
)
def test_authorize_api_keys(role: str, scopes: list[str] | None, action: str, allowed: bool) -> None:
    if allowed:
        authorize(Role(role), scopes, Action(action))
    else:
        with pytest.raises(Forbidden):
            authorize(Role(role), scopes, Action(action))


def test_forbidden_messages_say_why() -> None:
    with pytest.raises(Forbidden, match=r"role viewer may not link\.create"):
        authorize(Role.VIEWER, None, Action.LINK_CREATE)
    with pytest.raises(Forbidden, match="lacks the links:write scope"):
        authorize(Role.MEMBER, ["links:read"], Action.LINK_CREATE)
    with pytest.raises(Forbidden, match="signed-in session"):
        authorize(Role.OWNER, ["workspace:admin"], Action.APIKEY_MANAGE)


# (actor, target's current role, new role) -> allowed. Written out for every combination.
ROLE_CHANGES = """
owner  admin  admin  Y
owner  admin  member Y
owner  admin  viewer Y
owner  admin  owner  -
owner  member admin  Y
owner  member viewer Y
owner  member owner  -
owner  viewer admin  Y
owner  viewer member Y
owner  viewer owner  -
owner  owner  admin  -
admin  admin  member Y
admin  admin  viewer Y
admin  admin  owner  -
admin  member admin  Y
admin  member viewer Y
admin  member owner  -
admin  viewer member Y
admin  viewer admin  Y
admin  viewer owner  -
admin  owner  admin  -
admin  owner  viewer -
member member viewer -
member viewer member -
member viewer admin  -
viewer viewer member -
viewer member viewer -
"""


@pytest.mark.parametrize("row", ROLE_CHANGES.strip().splitlines())
def test_can_assign_role(row: str) -> None:
    actor, current, new, flag = row.split()
    assert can_assign_role(Role(actor), Role(current), Role(new)) is (flag == "Y")


@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        ("owner", "admin", True),
        ("owner", "member", True),
        ("owner", "viewer", True),
        ("owner", "owner", False),
        ("admin", "admin", True),
        ("admin", "member", True),
        ("admin", "viewer", True),
        ("admin", "owner", False),
        ("member", "viewer", False),
        ("member", "member", False),
        ("viewer", "viewer", False),
    ],
)
def test_can_remove_member(actor: str, target: str, allowed: bool) -> None:
    assert can_remove_member(Role(actor), Role(target)) is allowed


def test_parse_role() -> None:
    assert parse_role("admin") is Role.ADMIN
    with pytest.raises(ValidationFailed) as exc:
        parse_role("superuser")
    assert exc.value.field == "role"


def test_roles_and_actions_are_their_stored_strings() -> None:
    assert str(Role.OWNER) == "owner" and f"{Action.LINK_READ}" == "link.read"
    assert {"owner": 1}[Role.OWNER] == 1  # usable wherever the DB string is expected
    assert can(Role("member"), Action("link.create"))


def test_grantable_scopes_follow_the_role() -> None:
    from engine.auth.permissions import check_grant, grantable_scopes

    read = {"links:read", "analytics:read", "domains:read", "workspace:read"}
    assert grantable_scopes(Role.VIEWER) == read
    assert grantable_scopes(Role.MEMBER) == read | {"links:write"}
    assert grantable_scopes(Role.ADMIN) == SCOPES - {"billing:admin"}
    assert grantable_scopes(Role.OWNER) == SCOPES
    with pytest.raises(Forbidden) as raised:
        check_grant(Role.ADMIN, ["links:read", "billing:admin"])
    assert raised.value.field == "scopes" and "billing:admin" in raised.value.message
    check_grant(Role.OWNER, sorted(SCOPES))


def test_key_limit_never_exceeds_the_plan() -> None:
    from engine.ratelimit import key_limit

    assert key_limit("free", None) == 60 and key_limit("free", 1_000_000) == 60
    assert key_limit("free", 10) == 10 and key_limit("business", 3000) == 3000
    assert key_limit("no-such-plan", None) == 60
