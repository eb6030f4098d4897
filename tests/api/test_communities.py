from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import AuditLog, Membership, Role, Visibility
from tests.factories import add_member, auth, make_community, make_user


def test_create_community_makes_owner_in_top_tier_with_default_tiers(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session)
    r = client.post(
        "/communities",
        json={"slug": "taipei-hikers", "name": "台北山友會", "default_language": "zh-TW"},
        headers=auth(session, owner),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["my_role"] == "owner" and body["my_tier"] == "vip" and body["member_count"] == 1
    tiers = client.get(f"/communities/{body['id']}/tiers", headers=auth(session, owner)).json()
    assert [t["key"] for t in tiers] == ["free", "member", "vip"]
    dup = client.post(
        "/communities", json={"slug": "taipei-hikers", "name": "x"}, headers=auth(session, owner)
    )
    assert dup.status_code == 409 and dup.json()["error"] == "slug_taken"


@pytest.mark.parametrize(
    "payload",
    [
        {"slug": "A!", "name": "bad slug"},
        {"slug": "ok-slug", "name": ""},
        {"slug": "ok-slug", "name": "x", "visibility": "secret"},
        {"slug": "ok-slug", "name": "x", "owner_id": 1},
        {"slug": "ok-slug", "name": "x", "tiers": [{"key": "a", "name": "A", "rank": 0}] * 2},
    ],
)
def test_create_community_validation(client: TestClient, session: Session, payload: dict) -> None:
    r = client.post("/communities", json=payload, headers=auth(session, make_user(session)))
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


def test_join_leave_and_rejoin_public(client: TestClient, session: Session) -> None:
    community = make_community(session)
    user = make_user(session)
    h = auth(session, user)
    r = client.post(f"/communities/{community.id}/join", headers=h)
    assert r.status_code == 201 and r.json()["tier"] == "free" and r.json()["role"] == "member"
    again = client.post(f"/communities/{community.id}/join", headers=h)
    assert again.status_code == 409 and again.json()["error"] == "already_member"
    assert client.post(f"/communities/{community.id}/leave", headers=h).json()["status"] == "left"
    assert client.get(f"/communities/{community.id}/members", headers=h).json()["error"] == "not_a_member"
    assert client.post(f"/communities/{community.id}/join", headers=h).status_code == 201


def test_owner_cannot_leave(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    r = client.post(f"/communities/{community.id}/leave", headers=auth(session, owner))
    assert r.status_code == 409 and r.json()["error"] == "owner_cannot_leave"


def test_private_community_is_invisible_without_membership_or_invite(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session)
    community = make_community(session, owner, visibility=Visibility.PRIVATE)
    outsider = auth(session, make_user(session))
    for method, path in [
        ("get", f"/communities/{community.id}"),
        ("get", f"/communities/{community.id}/members"),
        ("get", f"/communities/{community.id}/tiers"),
        ("post", f"/communities/{community.id}/join"),
    ]:
        r = client.request(method, path, headers=outsider)
        assert r.status_code == 404 and r.json()["error"] == "community_not_found", path
    listed = client.get("/communities", headers=outsider).json()["items"]
    assert community.id not in {c["id"] for c in listed}


def test_invite_with_tier_expiry_and_use_limit(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner, visibility=Visibility.PRIVATE)
    inv = client.post(
        f"/communities/{community.id}/invites",
        json={"max_uses": 1, "tier": "member", "expires_in_hours": 24},
        headers=auth(session, owner),
    ).json()
    first = client.post(f"/invites/{inv['code']}/accept", headers=auth(session, make_user(session)))
    assert first.status_code == 201 and first.json()["tier"] == "member"
    second = client.post(f"/invites/{inv['code']}/accept", headers=auth(session, make_user(session)))
    assert second.status_code == 409 and second.json()["error"] == "invite_exhausted"
    unknown = client.post("/invites/nope-nope/accept", headers=auth(session, make_user(session)))
    assert unknown.status_code == 404 and unknown.json()["error"] == "invite_not_found"
    listed = client.get(f"/communities/{community.id}/invites", headers=auth(session, owner)).json()
    assert listed["items"][0]["uses"] == 1


def test_revoked_invite_cannot_be_used(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner, visibility=Visibility.PRIVATE)
    h = auth(session, owner)
    inv = client.post(f"/communities/{community.id}/invites", json={}, headers=h).json()
    assert client.delete(f"/communities/{community.id}/invites/{inv['id']}", headers=h).status_code == 200
    r = client.post(f"/invites/{inv['code']}/accept", headers=auth(session, make_user(session)))
    assert r.status_code == 409 and r.json()["error"] == "invite_exhausted"


ROLE_CASES = [
    # (actor role, target role, new role, expected status)
    (Role.OWNER, Role.MEMBER, Role.ADMIN, 200),
    (Role.OWNER, Role.ADMIN, Role.MEMBER, 200),
    (Role.ADMIN, Role.MEMBER, Role.MODERATOR, 200),
    (Role.ADMIN, Role.MEMBER, Role.ADMIN, 403),
    (Role.ADMIN, Role.ADMIN, Role.MEMBER, 403),
    (Role.MODERATOR, Role.MEMBER, Role.MODERATOR, 403),
    (Role.MEMBER, Role.MEMBER, Role.MODERATOR, 403),
    (Role.ADMIN, Role.OWNER, Role.MEMBER, 403),
]


@pytest.mark.parametrize(("actor_role", "target_role", "new_role", "expected"), ROLE_CASES)
def test_role_change_matrix(
    client: TestClient, session: Session, actor_role: Role, target_role: Role, new_role: Role, expected: int
) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    actor = owner if actor_role == Role.OWNER else add_member(session, community, role=actor_role)
    target = owner if target_role == Role.OWNER else add_member(session, community, role=target_role)
    r = client.patch(
        f"/communities/{community.id}/members/{target.id}",
        json={"role": new_role.value},
        headers=auth(session, actor),
    )
    assert r.status_code == expected, r.text
    stored = session.scalar(
        select(Membership.role).where(
            Membership.community_id == community.id, Membership.user_id == target.id
        )
    )
    assert stored == (new_role if expected == 200 else target_role)


def test_tier_change_and_member_filters(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    vip = add_member(session, community, tier="vip")
    add_member(session, community)
    h = auth(session, owner)
    vips = client.get(f"/communities/{community.id}/members?tier=vip", headers=h).json()["items"]
    assert {m["user"]["id"] for m in vips} == {owner.id, vip.id}
    r = client.patch(f"/communities/{community.id}/members/{vip.id}", json={"tier": "gold"}, headers=h)
    assert r.status_code == 404 and r.json()["error"] == "tier_not_found"
    mods = client.get(f"/communities/{community.id}/members?role=owner", headers=h).json()["items"]
    assert [m["user"]["id"] for m in mods] == [owner.id]


def test_member_list_paginates_with_cursor(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    for _ in range(5):
        add_member(session, community)
    h = auth(session, owner)
    seen: list[int] = []
    cursor = None
    while True:
        url = f"/communities/{community.id}/members?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=h).json()
        seen += [m["user"]["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 == len(set(seen))
    bad = client.get(f"/communities/{community.id}/members?cursor=%%%", headers=h)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_cursor"


def test_ban_blocks_rejoin_until_lifted(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    mod = add_member(session, community, role=Role.MODERATOR)
    troll = add_member(session, community)
    r = client.post(
        f"/communities/{community.id}/bans",
        json={"user_id": troll.id, "reason": "spam 廣告"},
        headers=auth(session, mod),
    )
    assert r.status_code == 201
    ban_id = r.json()["id"]
    th = auth(session, troll)
    assert client.get(f"/communities/{community.id}/members", headers=th).json()["error"] == "not_a_member"
    rejoin = client.post(f"/communities/{community.id}/join", headers=th)
    assert rejoin.status_code == 403 and rejoin.json()["error"] == "banned"
    # A moderator cannot ban a peer or someone above them.
    other_mod = add_member(session, community, role=Role.MODERATOR)
    r = client.post(
        f"/communities/{community.id}/bans", json={"user_id": other_mod.id}, headers=auth(session, mod)
    )
    assert r.status_code == 403
    assert client.delete(f"/communities/{community.id}/bans/{ban_id}", headers=auth(session, mod)).is_success
    assert client.post(f"/communities/{community.id}/join", headers=th).status_code == 201
    actions = session.scalars(
        select(AuditLog.action).where(AuditLog.community_id == community.id).order_by(AuditLog.id)
    ).all()
    assert "member.ban" in actions and "member.unban" in actions


def test_other_communities_data_is_out_of_reach(client: TestClient, session: Session) -> None:
    a_owner = make_user(session)
    a = make_community(session, a_owner)
    b = make_community(session, visibility=Visibility.PRIVATE)
    h = auth(session, a_owner)
    assert client.get(f"/communities/{b.id}/members", headers=h).status_code == 404
    assert client.patch(f"/communities/{b.id}", json={"name": "x"}, headers=h).status_code == 404
    assert client.post(f"/communities/{b.id}/invites", json={}, headers=h).status_code == 404
    assert client.get(f"/communities/{b.id}/audit", headers=h).status_code == 404
    # Ids of another community's rows are not accepted through this one.
    b_invite_id = session.scalar(select(AuditLog.target_id).where(AuditLog.community_id == b.id))
    r = client.delete(f"/communities/{a.id}/invites/{b_invite_id}", headers=h)
    assert r.status_code == 404


def test_api_key_is_scoped_to_one_community_and_its_scopes(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    other = make_community(session, owner)
    h = auth(session, owner)
    created = client.post(
        f"/communities/{community.id}/api-keys", json={"name": "crm", "scopes": ["read"]}, headers=h
    )
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("hthk_")
    kh = {"Authorization": f"Bearer {key}"}
    assert client.get(f"/communities/{community.id}/members", headers=kh).status_code == 200
    assert client.get(f"/communities/{other.id}", headers=kh).status_code == 404
    r = client.patch(f"/communities/{community.id}", json={"name": "x"}, headers=kh)
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    write_key = client.post(
        f"/communities/{community.id}/api-keys", json={"name": "w", "scopes": ["write", "read"]}, headers=h
    ).json()
    wh = {"Authorization": f"Bearer {write_key['key']}"}
    assert (
        client.patch(f"/communities/{community.id}", json={"name": "新名字"}, headers=wh).status_code == 200
    )
    r = client.post("/me/tokens", json={}, headers=wh)
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"
    listed = client.get(f"/communities/{community.id}/api-keys", headers=h).json()
    assert all("key" not in k for k in listed) and {k["name"] for k in listed} == {"crm", "w"}
    assert client.delete(f"/communities/{community.id}/api-keys/{created.json()['id']}", headers=h).is_success
    assert client.get(f"/communities/{community.id}/members", headers=kh).status_code == 401


def test_members_cannot_manage(client: TestClient, session: Session) -> None:
    community = make_community(session)
    member = add_member(session, community, tier="vip")
    h = auth(session, member)
    for method, path, payload in [
        ("patch", f"/communities/{community.id}", {"name": "x"}),
        ("post", f"/communities/{community.id}/invites", {}),
        ("post", f"/communities/{community.id}/tiers", {"key": "gold", "name": "Gold", "rank": 5}),
        ("post", f"/communities/{community.id}/api-keys", {"name": "k"}),
        ("get", f"/communities/{community.id}/audit", None),
        ("get", f"/communities/{community.id}/bans", None),
    ]:
        r = client.request(method, path, json=payload, headers=h)
        assert r.status_code == 403 and r.json()["error"] == "insufficient_role", path


def test_audit_records_before_and_after(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    h = auth(session, owner)
    client.patch(f"/communities/{community.id}", json={"name": "新名稱"}, headers=h)
    page = client.get(f"/communities/{community.id}/audit?action=community.update", headers=h).json()
    (row,) = page["items"]
    assert row["before"]["name"].startswith("Community") and row["after"]["name"] == "新名稱"
    assert row["actor_user_id"] == owner.id


def test_transfer_ownership(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    heir = add_member(session, community, role=Role.ADMIN)
    r = client.post(
        f"/communities/{community.id}/transfer-ownership",
        json={"user_id": heir.id},
        headers=auth(session, owner),
    )
    assert r.status_code == 200 and r.json()["role"] == "owner"
    roles = dict(
        session.execute(
            select(Membership.user_id, Membership.role).where(Membership.community_id == community.id)
        ).all()
    )
    assert roles[owner.id] == Role.ADMIN and roles[heir.id] == Role.OWNER


def test_remove_member_without_ban(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    moderator = add_member(session, community, role=Role.MODERATOR)
    member = add_member(session, community)
    peer = add_member(session, community, role=Role.MODERATOR)
    path = f"/communities/{community.id}/members"
    r = client.delete(f"{path}/{peer.id}", headers=auth(session, moderator))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"
    r = client.delete(f"{path}/{member.id}", headers=auth(session, moderator))
    assert r.status_code == 200 and r.json()["status"] == "left"
    assert client.get(path, headers=auth(session, member)).json()["error"] == "not_a_member"
    again = client.delete(f"{path}/{member.id}", headers=auth(session, moderator))
    assert again.status_code == 404 and again.json()["error"] == "member_not_found"
    # Not a ban: they may come back.
    assert client.post(f"/communities/{community.id}/join", headers=auth(session, member)).status_code == 201
    actions = session.scalars(select(AuditLog.action).where(AuditLog.community_id == community.id)).all()
    assert "member.remove" in actions
