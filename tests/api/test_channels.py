from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access import Actor
from core.accounts import service as accounts
from core.accounts.schemas import ApiKeyIn
from core.communities import service as communities
from core.communities.schemas import BanIn
from core.conversation import service as conversation
from core.conversation.schemas import ChannelIn
from core.models import AuditLog, Channel, ChannelMember, Community, Role, User, Visibility
from tests.factories import add_member, auth, make_community, make_user

# slug -> (min_tier, min_role, post_min_role), in position order
CHANNELS = {
    "general": (None, Role.MEMBER, Role.MEMBER),
    "lounge": ("member", Role.MEMBER, Role.MEMBER),
    "vip-room": ("vip", Role.MEMBER, Role.MEMBER),
    "staff-room": (None, Role.MODERATOR, Role.MODERATOR),
    "announcements": (None, Role.MEMBER, Role.MODERATOR),
}
ALL = list(CHANNELS)
EVERYONE = ["general", "announcements"]


@dataclass
class World:
    community: Community
    owner: User
    channels: dict[str, int]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)


def make_channel(
    session: Session,
    owner: User,
    community: Community,
    slug: str,
    *,
    min_tier: str | None = None,
    min_role: Role = Role.MEMBER,
    post_min_role: Role = Role.MEMBER,
    position: int = 0,
) -> int:
    out = conversation.create_channel(
        session,
        Actor(owner),
        community.id,
        ChannelIn(
            slug=slug,
            name=slug.title(),
            min_tier=min_tier,
            min_role=min_role,
            post_min_role=post_min_role,
            position=position,
        ),
    )
    return out.id


def api_key(session: Session, owner: User, community: Community, scopes: list[str]) -> dict[str, str]:
    issued = accounts.create_api_key(
        session,
        Actor(owner),
        community.id,
        ApiKeyIn(name="bot", scopes=scopes),  # type: ignore[arg-type]
    )
    return {"Authorization": f"Bearer {issued.secret}"}


def build_world(session: Session, *, visibility: Visibility = Visibility.PUBLIC) -> World:
    owner = make_user(session, name="Owner")
    community = make_community(session, owner, visibility=visibility)
    channels = {
        slug: make_channel(
            session, owner, community, slug, min_tier=t, min_role=r, post_min_role=p, position=i
        )
        for i, (slug, (t, r, p)) in enumerate(CHANNELS.items())
    }
    world = World(community, owner, channels)
    world.users["owner"] = owner
    world.users["admin"] = add_member(session, community, role=Role.ADMIN)
    world.users["moderator"] = add_member(session, community, role=Role.MODERATOR)
    world.users["free"] = add_member(session, community, tier="free")
    world.users["member"] = add_member(session, community, tier="member")
    world.users["vip"] = add_member(session, community, tier="vip")
    other = make_community(session)
    world.users["other_member"] = add_member(session, other, tier="vip")
    world.users["outsider"] = make_user(session)
    world.users["left"] = add_member(session, community, tier="vip")
    communities.leave(session, Actor(world.users["left"]), community.id)
    world.users["banned"] = add_member(session, community, tier="vip")
    communities.ban(session, Actor(owner), community.id, BanIn(user_id=world.users["banned"].id))
    for name, user in world.users.items():
        world.headers[name] = auth(session, user)
    world.headers["read_key"] = api_key(session, owner, community, ["read"])
    return world


@pytest.fixture
def world(session: Session) -> World:
    return build_world(session)


VISIBLE = {
    "owner": ALL,
    "admin": ALL,
    "moderator": ALL,
    "free": EVERYONE,
    "member": ["general", "lounge", "announcements"],
    "vip": ["general", "lounge", "vip-room", "announcements"],
    "read_key": ALL,
}
NOT_MEMBERS = ["other_member", "outsider", "left", "banned"]


@pytest.mark.parametrize("who", list(VISIBLE))
def test_visibility_matrix_for_members(client: TestClient, world: World, who: str) -> None:
    headers = world.headers[who]
    r = client.get(f"/communities/{world.community.id}/channels", headers=headers)
    assert r.status_code == 200, r.text
    assert [c["slug"] for c in r.json()] == VISIBLE[who]
    for slug, channel_id in world.channels.items():
        one = client.get(f"/communities/{world.community.id}/channels/{channel_id}", headers=headers)
        threads = client.get(f"/channels/{channel_id}/threads", headers=headers)
        if slug in VISIBLE[who]:
            assert one.status_code == 200 and one.json()["slug"] == slug
            assert threads.status_code == 200 and threads.json()["items"] == []
        else:
            # Hidden is indistinguishable from absent: 404, never 403.
            assert one.status_code == 404 and one.json()["error"] == "channel_not_found"
            assert threads.status_code == 404 and threads.json()["error"] == "channel_not_found"
    missing = client.get("/channels/999999/threads", headers=headers)
    assert missing.json()["error"] == "channel_not_found"


@pytest.mark.parametrize("who", NOT_MEMBERS)
def test_non_members_see_no_channel(client: TestClient, world: World, who: str) -> None:
    headers = world.headers[who]
    r = client.get(f"/communities/{world.community.id}/channels", headers=headers)
    assert r.status_code == 403 and r.json()["error"] == "not_a_member"
    for channel_id in world.channels.values():
        one = client.get(f"/communities/{world.community.id}/channels/{channel_id}", headers=headers)
        assert one.status_code == 404 and one.json()["error"] == "channel_not_found"
        r = client.post(f"/channels/{channel_id}/threads", json={"title": "hi", "body": "x"}, headers=headers)
        assert r.status_code == 404 and r.json()["error"] == "channel_not_found"


def test_private_community_channels_do_not_reveal_the_community(client: TestClient, session: Session) -> None:
    world = build_world(session, visibility=Visibility.PRIVATE)
    outsider = world.headers["outsider"]
    general = world.channels["general"]
    r = client.get(f"/communities/{world.community.id}/channels", headers=outsider)
    assert r.status_code == 404 and r.json()["error"] == "community_not_found"
    # Reached by channel id, even the community's existence stays hidden.
    r = client.get(f"/channels/{general}/threads", headers=outsider)
    assert r.status_code == 404 and r.json()["error"] == "channel_not_found"
    assert client.get(f"/channels/{general}/threads", headers=world.headers["free"]).status_code == 200


def test_api_key_is_confined_to_its_community_and_scope(
    client: TestClient, session: Session, world: World
) -> None:
    other_owner = make_user(session)
    other = make_community(session, other_owner)
    foreign = make_channel(session, other_owner, other, "elsewhere")
    key = world.headers["read_key"]
    r = client.get(f"/channels/{foreign}/threads", headers=key)
    assert r.status_code == 404 and r.json()["error"] == "channel_not_found"
    r = client.get(f"/communities/{other.id}/channels", headers=key)
    assert r.status_code == 404 and r.json()["error"] == "community_not_found"
    r = client.post(
        f"/channels/{world.channels['general']}/threads", json={"title": "t", "body": "b"}, headers=key
    )
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"


def test_channel_of_another_community_is_not_found_under_this_one(
    client: TestClient, session: Session, world: World
) -> None:
    other_owner = make_user(session)
    other = make_community(session, other_owner)
    foreign = make_channel(session, other_owner, other, "elsewhere")
    # The owner of A is not a member of B, but even B's own owner may not reach it through A.
    add_member(session, world.community, other_owner)
    for headers in (world.headers["owner"], auth(session, other_owner)):
        r = client.get(f"/communities/{world.community.id}/channels/{foreign}", headers=headers)
        assert r.status_code == 404 and r.json()["error"] == "channel_not_found"
        r = client.patch(
            f"/communities/{world.community.id}/channels/{foreign}", json={"name": "x"}, headers=headers
        )
        assert r.status_code == 404 and r.json()["error"] == "channel_not_found"


def test_admin_creates_updates_and_archives_a_channel_with_audit(
    client: TestClient, session: Session, world: World
) -> None:
    cid = world.community.id
    admin = world.headers["admin"]
    r = client.post(
        f"/communities/{cid}/channels",
        json={"slug": "book-club", "name": "Book club", "min_tier": "member", "position": 9},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    channel = r.json()
    assert channel["min_tier"] == "member" and channel["min_role"] == "member" and channel["joined"] is False
    assert channel["can_post"] is True and channel["archived_at"] is None

    r = client.patch(
        f"/communities/{cid}/channels/{channel['id']}",
        json={"name": "Books", "min_tier": None, "post_min_role": "moderator"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Books" and r.json()["min_tier"] is None
    assert r.json()["post_min_role"] == "moderator" and r.json()["can_post"] is True
    # The lifted tier requirement makes it visible to free members.
    slugs = [
        c["slug"] for c in client.get(f"/communities/{cid}/channels", headers=world.headers["free"]).json()
    ]
    assert "book-club" in slugs

    r = client.post(f"/communities/{cid}/channels/{channel['id']}/archive", headers=admin)
    assert r.status_code == 200 and r.json()["archived_at"] is not None and r.json()["can_post"] is False
    listed = client.get(f"/communities/{cid}/channels", headers=admin).json()
    assert "book-club" not in [c["slug"] for c in listed]
    listed = client.get(f"/communities/{cid}/channels?include_archived=true", headers=admin).json()
    assert "book-club" in [c["slug"] for c in listed]
    r = client.post(f"/channels/{channel['id']}/threads", json={"title": "t", "body": "b"}, headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "channel_archived"
    # Archiving again changes nothing and writes no second audit row.
    assert (
        client.post(f"/communities/{cid}/channels/{channel['id']}/archive", headers=admin).status_code == 200
    )
    r = client.post(f"/communities/{cid}/channels/{channel['id']}/unarchive", headers=admin)
    assert r.status_code == 200 and r.json()["archived_at"] is None

    actions = session.scalars(
        select(AuditLog.action)
        .where(
            AuditLog.community_id == cid,
            AuditLog.target_type == "channels",
            AuditLog.target_id == channel["id"],
        )
        .order_by(AuditLog.id)
    ).all()
    assert actions == ["channel.create", "channel.update", "channel.archive", "channel.unarchive"]
    update = session.scalar(
        select(AuditLog).where(AuditLog.action == "channel.update", AuditLog.target_id == channel["id"])
    )
    assert update is not None and update.before is not None and update.after is not None
    assert update.before["name"] == "Book club" and update.after["name"] == "Books"
    assert update.before["min_tier_id"] is not None and update.after["min_tier_id"] is None


@pytest.mark.parametrize("who", ["moderator", "free", "read_key", "outsider"])
def test_only_admins_manage_channels(client: TestClient, world: World, who: str) -> None:
    cid = world.community.id
    headers = world.headers[who]
    general = world.channels["general"]
    r = client.post(f"/communities/{cid}/channels", json={"slug": "nope", "name": "Nope"}, headers=headers)
    assert r.status_code == 403
    assert r.json()["error"] in {"insufficient_role", "insufficient_scope", "not_a_member"}
    r = client.patch(f"/communities/{cid}/channels/{general}", json={"name": "Hacked"}, headers=headers)
    assert r.status_code in {403, 404}
    r = client.post(f"/communities/{cid}/channels/{general}/archive", headers=headers)
    assert r.status_code in {403, 404}
    r = client.get(f"/communities/{cid}/channels/{general}", headers=world.headers["owner"])
    assert r.json()["name"] == "General" and r.json()["archived_at"] is None


def test_channel_validation_and_conflicts(client: TestClient, session: Session, world: World) -> None:
    cid = world.community.id
    owner = world.headers["owner"]
    before = session.scalar(select(func.count()).select_from(Channel).where(Channel.community_id == cid))

    r = client.post(f"/communities/{cid}/channels", json={"slug": "general", "name": "Again"}, headers=owner)
    assert r.status_code == 409 and r.json()["error"] == "slug_taken"
    r = client.post(
        f"/communities/{cid}/channels",
        json={"slug": "x-tier", "name": "X", "min_tier": "gold"},
        headers=owner,
    )
    assert r.status_code == 404 and r.json()["error"] == "tier_not_found"
    r = client.post(f"/communities/{cid}/channels", json={"slug": "Bad Slug!", "name": "X"}, headers=owner)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = client.post(
        f"/communities/{cid}/channels", json={"slug": "ok-slug", "name": "X", "colour": "red"}, headers=owner
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = client.post(
        f"/communities/{cid}/channels",
        json={"slug": "ok-slug", "name": "X", "min_role": "king"},
        headers=owner,
    )
    assert r.status_code == 422
    r = client.post(
        f"/communities/{cid}/channels",
        content=b'{"slug": "ok-slug",',
        headers={**owner, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    r = client.patch(
        f"/communities/{cid}/channels/{world.channels['lounge']}", json={"slug": "general"}, headers=owner
    )
    assert r.status_code == 409 and r.json()["error"] == "slug_taken"

    after = session.scalar(select(func.count()).select_from(Channel).where(Channel.community_id == cid))
    assert after == before
    lounge = client.get(f"/communities/{cid}/channels/{world.channels['lounge']}", headers=owner).json()
    assert lounge["slug"] == "lounge"


def test_join_and_leave_a_channel(client: TestClient, session: Session, world: World) -> None:
    cid = world.community.id
    free = world.headers["free"]
    general = world.channels["general"]
    url = f"/communities/{cid}/channels/{general}/membership"
    for _ in range(2):  # idempotent
        r = client.post(url, headers=free)
        assert r.status_code == 200 and r.json()["joined"] is True
    rows = session.scalar(
        select(func.count()).select_from(ChannelMember).where(ChannelMember.channel_id == general)
    )
    assert rows == 1
    listed = {c["slug"]: c["joined"] for c in client.get(f"/communities/{cid}/channels", headers=free).json()}
    assert listed == {"general": True, "announcements": False}
    # Another member's view has its own flag.
    other_view = client.get(f"/communities/{cid}/channels/{general}", headers=world.headers["member"]).json()
    assert other_view["joined"] is False

    for _ in range(2):
        r = client.delete(url, headers=free)
        assert r.status_code == 200 and r.json()["joined"] is False
    assert client.get(f"/communities/{cid}/channels/{general}", headers=free).json()["joined"] is False

    r = client.post(f"/communities/{cid}/channels/{world.channels['vip-room']}/membership", headers=free)
    assert r.status_code == 404 and r.json()["error"] == "channel_not_found"
    r = client.post(url, headers=world.headers["outsider"])
    assert r.status_code == 404 and r.json()["error"] == "channel_not_found"

    client.post(f"/communities/{cid}/channels/{general}/archive", headers=world.headers["owner"])
    r = client.post(url, headers=free)
    assert r.status_code == 409 and r.json()["error"] == "channel_archived"


def test_following_is_not_for_api_keys(client: TestClient, session: Session, world: World) -> None:
    key = api_key(session, world.owner, world.community, ["read", "write"])
    url = f"/communities/{world.community.id}/channels/{world.channels['general']}/membership"
    r = client.post(url, headers=key)
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"


def test_channels_follow_position_and_report_can_post(client: TestClient, world: World) -> None:
    cid = world.community.id
    owner = world.headers["owner"]
    r = client.patch(
        f"/communities/{cid}/channels/{world.channels['announcements']}", json={"position": 0}, headers=owner
    )
    assert r.status_code == 200
    r = client.patch(
        f"/communities/{cid}/channels/{world.channels['general']}", json={"position": 7}, headers=owner
    )
    listed = client.get(f"/communities/{cid}/channels", headers=world.headers["free"]).json()
    assert [c["slug"] for c in listed] == ["announcements", "general"]
    assert {c["slug"]: c["can_post"] for c in listed} == {"announcements": False, "general": True}
    mod = client.get(f"/communities/{cid}/channels", headers=world.headers["moderator"]).json()
    assert all(c["can_post"] for c in mod)
