"""What the recommender learns from: members, items and interactions.

One shape for every source. `hearth eval recommend` reads it from JSON Lines; the live
service (`recommender.repository`) builds it from the database for one community. The
model (`recommender.model`) only ever sees a `Corpus`, so what is evaluated is exactly
what serves members.

Ids are strings and unique across members and items of one corpus (the live service
uses "m:<user id>", "event:<id>", "course:<id>", "thread:<id>").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

Lang = Literal["zh-TW", "zh-CN", "en"]
ItemKind = Literal["event", "course", "thread"]
Kind = Literal["people", "event", "course", "thread"]
Tier = Literal["free", "member", "vip"]
InteractionKind = Literal["follow", "tip", "reply", "rsvp", "attend", "enrol", "view"]

KINDS: tuple[Kind, ...] = ("people", "event", "course", "thread")
ITEM_KINDS: tuple[ItemKind, ...] = ("event", "course", "thread")
LANGS: tuple[Lang, ...] = ("zh-TW", "zh-CN", "en")
TIERS: tuple[Tier, ...] = ("free", "member", "vip")
INTERACTION_KINDS: tuple[InteractionKind, ...] = ("follow", "tip", "reply", "rsvp", "attend", "enrol", "view")

# Which interactions say that a member chose an item of a kind (the evaluation's ground truth).
# Member-to-member interactions (follow, tip, reply to a member) define friends.
DEFINES: dict[Kind, frozenset[InteractionKind]] = {
    "people": frozenset({"follow", "tip", "reply"}),
    "event": frozenset({"rsvp", "attend"}),
    "course": frozenset({"enrol"}),
    "thread": frozenset({"reply", "view"}),
}


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    lang: Lang
    profile: str = ""
    interests: tuple[str, ...] = ()
    name: str = ""
    tier: Tier = "free"
    joined_at: datetime | None = None

    def text(self) -> str:
        """What a member's embedding is computed from (never DMs)."""
        parts = [self.profile.strip(), " ".join(self.interests)]
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    kind: ItemKind
    lang: Lang
    title: str
    text: str = ""
    tier: Tier = "free"
    created_at: datetime | None = None
    starts_at: datetime | None = None  # events

    def embed_text(self) -> str:
        return f"{self.title}\n{self.text}".strip()


@dataclass(frozen=True, slots=True)
class Interaction:
    member: str
    target: str  # an item id or a member id
    kind: InteractionKind
    ts: datetime


@dataclass
class Corpus:
    members: dict[str, Member] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    interactions: list[Interaction] = field(default_factory=list)

    def target_kind(self, target: str) -> Kind | None:
        if target in self.members:
            return "people"
        item = self.items.get(target)
        return item.kind if item else None


class CorpusError(ValueError):
    """A record that cannot be read; the message names the line."""


def _ts(raw: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (AttributeError, ValueError) as exc:
        raise CorpusError(f"{where}: ts is not ISO 8601: {raw!r}") from exc


def _choice(value: object, allowed: tuple[str, ...], name: str, where: str) -> str:
    if value not in allowed:
        raise CorpusError(f"{where}: {name} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def parse_records(lines: Iterable[str], source: str = "<data>") -> Corpus:
    """Read JSON Lines of member, item and interaction records into a corpus."""
    corpus = Corpus()
    pending: list[tuple[str, Interaction]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(rec, dict):
            raise CorpusError(f"{where}: a record must be a JSON object")
        try:
            kind = rec["type"]
            if kind == "member":
                mid = str(rec["id"])
                corpus.members[mid] = Member(
                    id=mid,
                    lang=_choice(rec.get("lang", "en"), LANGS, "lang", where),  # type: ignore[arg-type]
                    profile=str(rec.get("profile", "")),
                    interests=tuple(str(i) for i in rec.get("interests", ())),
                    name=str(rec.get("name", "")),
                    tier=_choice(rec.get("tier", "free"), TIERS, "tier", where),  # type: ignore[arg-type]
                )
            elif kind == "item":
                iid = str(rec["id"])
                corpus.items[iid] = Item(
                    id=iid,
                    kind=_choice(rec["kind"], ("event", "course", "thread"), "kind", where),  # type: ignore[arg-type]
                    lang=_choice(rec.get("lang", "en"), LANGS, "lang", where),  # type: ignore[arg-type]
                    title=str(rec.get("title", "")),
                    text=str(rec.get("text", "")),
                    tier=_choice(rec.get("tier", "free"), TIERS, "tier", where),  # type: ignore[arg-type]
                    created_at=_ts(rec["created_at"], where) if rec.get("created_at") else None,
                    starts_at=_ts(rec["starts_at"], where) if rec.get("starts_at") else None,
                )
            elif kind == "interaction":
                pending.append(
                    (
                        where,
                        Interaction(
                            member=str(rec["member"]),
                            target=str(rec["target"]),
                            kind=_choice(rec["kind"], INTERACTION_KINDS, "kind", where),  # type: ignore[arg-type]
                            ts=_ts(rec["ts"], where),
                        ),
                    )
                )
            else:
                raise CorpusError(f"{where}: unknown record type {kind!r}")
        except KeyError as exc:
            raise CorpusError(f"{where}: missing field {exc.args[0]!r}") from exc
    for where, inter in pending:
        if inter.member not in corpus.members:
            raise CorpusError(f"{where}: unknown member {inter.member!r}")
        if corpus.target_kind(inter.target) is None:
            raise CorpusError(f"{where}: unknown target {inter.target!r}")
        corpus.interactions.append(inter)
    return corpus


def load_jsonl(path: Path) -> Corpus:
    with path.open(encoding="utf-8") as fh:
        return parse_records(fh, source=str(path))


def dump_records(corpus: Corpus) -> Iterator[str]:
    """The corpus as JSON Lines (the inverse of `parse_records`)."""
    for m in corpus.members.values():
        yield json.dumps(
            {
                "type": "member",
                "id": m.id,
                "lang": m.lang,
                "profile": m.profile,
                "interests": list(m.interests),
                "name": m.name,
                "tier": m.tier,
            },
            ensure_ascii=False,
        )
    for i in corpus.items.values():
        rec: dict[str, object] = {
            "type": "item",
            "id": i.id,
            "kind": i.kind,
            "lang": i.lang,
            "title": i.title,
            "text": i.text,
            "tier": i.tier,
        }
        if i.created_at:
            rec["created_at"] = i.created_at.isoformat()
        if i.starts_at:
            rec["starts_at"] = i.starts_at.isoformat()
        yield json.dumps(rec, ensure_ascii=False)
    for x in corpus.interactions:
        yield json.dumps(
            {
                "type": "interaction",
                "member": x.member,
                "target": x.target,
                "kind": x.kind,
                "ts": x.ts.isoformat(),
            },
            ensure_ascii=False,
        )
