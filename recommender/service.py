"""Recommendations for members, and the upkeep of what they are computed from.

Serving. Each process keeps a fitted `RecommenderModel` per community (the 64 most recently
used), fitted from the corpus (`recommender.repository`) and the stored embeddings, so
nothing already embedded is embedded again. A held model is refitted when the community's
fingerprint changes: one query combining the worker's version stamp (`recommender_state`,
bumped whenever embeddings change) with counts and high-water marks of memberships,
follows, tips, posts, reactions, RSVPs, events and enrolments. API and worker processes
share nothing but the database, so the stamp is how a refresh in one reaches the others.
The fingerprint is read at most every `check_every` seconds, and a community whose fit is
slow is refitted only as often as keeps fitting under `max_fit_share` of the time. In the
API a stale model keeps serving while its successor is fitted in a background thread.

Whatever the model's age, each request checks what it returns against the database: blocks
(both ways: people, the threads they wrote, the events and courses they host), members who
left, were disabled or opted out, deleted threads, archived channels, cancelled or ended
events, unpublished courses, and gates that moved since the fit. Role-gated threads (an
admins-only room) are never shown; tier-gated items become at most one labelled upgrade
suggestion. "Not interested" is passed to the model, which drops the target and pushes
look-alikes down; on something the member may not see it answers like a target that does
not exist. A member who opted out gets non-personalised results, labelled so. Reasons are
rendered in the member's language and never name someone blocked (either way), opted out,
departed or disabled: the names of each page are checked live. Nothing here reads direct
messages.

A fit embeds at most `fit_embed_max` texts the store lacks. After a model change (the model
id carries the engine's version) the previous model keeps serving until the worker has
filled the store; with nothing held, what has no vector yet is ranked by behaviour alone.

Upkeep. `embed_entity` (the after-commit job) and `refresh` (the beat job) keep stored
embeddings equal to the current texts, recomputing only what changed; `rebuild` does a
whole community with progress. Index files are written after commit by the tasks, under a
per-file lock (see `recommender.store`); a refresh runs once at a time per deployment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access import Actor, CommunityContext, community_context
from core.clock import utcnow
from core.courses import repository as courses_repo
from core.db import session_scope
from core.errors import InvalidInput, NotFound
from core.models import (
    Community,
    EmbeddingEntity,
    FeedbackKind,
    Language,
    RecommendationFeedback,
)
from core.social import service as social
from recommender import repository as repo
from recommender import store
from recommender.corpus import ITEM_KINDS, Item, ItemKind, Kind, Lang
from recommender.embedder import Embedder, content_hash, get_embedder
from recommender.index import VectorIndex
from recommender.model import Reason, Recommendation, RecommenderModel
from recommender.reasons import render
from recommender.schemas import FeedbackOut, ReasonOut, RecommendationOut, RecommendationsOut

log = logging.getLogger(__name__)

# At most this many texts are embedded per beat tick, across communities: a model change
# re-embeds a large deployment over several ticks instead of in one unbounded job.
REFRESH_BUDGET = 2000
CHECK_EVERY_S = 15.0
MAX_FIT_SHARE = 0.05
MAX_COMMUNITIES = 64  # fitted models held per process
# A request-time (or API background) fit embeds at most this many texts that the store lacks;
# more means the worker is filling the store (a model change) and the fit waits for it.
FIT_EMBED_MAX = 64
NOT_PERSONALISED = "not_personalised"
# The opt-out is the live service's rule, not the model's: its note is worded here and appended
# to the model's own (non-personalised) reason, e.g. "Popular: 12 members (you turned off ...)".
_OPTED_OUT_NOTE: dict[str, str] = {
    "en": " (you turned off personalised recommendations)",
    "zh-TW": "（你已關閉個人化推薦）",
    "zh-CN": "（你已关闭个性化推荐）",
}
# The model is asked for more than the page so that request-time filters can still fill it.
OVERFETCH = 3

ENTITY_TYPES = ("user", "member", "thread", "event", "course")


def _invalid_entity(entity_type: str) -> InvalidInput:
    return InvalidInput(f"unknown entity type {entity_type!r}", code="invalid_entity")


def _target_not_found() -> NotFound:
    return NotFound("no such member or item in this community", code="target_not_found")


def _invalid_target() -> InvalidInput:
    return InvalidInput("you cannot give feedback about yourself", code="invalid_target")


# --- upkeep ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexChange:
    """One vector to put into (or, with `vector=None`, take out of) a saved index."""

    community_id: int
    kind: str
    index_id: int
    vector: np.ndarray | None
    content_hash: str | None = None


_KIND = {
    EmbeddingEntity.MEMBER: "people",
    EmbeddingEntity.THREAD: "thread",
    EmbeddingEntity.EVENT: "event",
    EmbeddingEntity.COURSE: "course",
}


def _index_id(session: Session, key: store.Key) -> int | None:
    """A member's id in people indexes is their user id; None when the membership row is gone
    (its vector cannot be found by id any more: the next refresh rewrites the file)."""
    if key[0] == EmbeddingEntity.MEMBER:
        return repo.membership_user_id(session, key[1])
    return key[1]


def _entity_communities(session: Session, key: store.Key) -> set[int]:
    """Every community whose index may hold this entity: where rows are stored, and its own."""
    found = store.communities_of(session, key)
    if key[0] == EmbeddingEntity.MEMBER:
        own = repo.membership_community(session, key[1])
    else:
        own = repo.item_community(session, key[0].value, key[1])
    if own is not None:
        found.add(own)
    return found


def _keys(session: Session, entity_type: str, entity_id: int) -> list[store.Key]:
    if entity_type == "user":
        return [(EmbeddingEntity.MEMBER, mid) for mid in repo.memberships_of(session, entity_id)]
    if entity_type not in ENTITY_TYPES:
        raise _invalid_entity(entity_type)
    return [(EmbeddingEntity(entity_type), entity_id)]


def embed_entity(session: Session, entity_type: str, entity_id: int, embedder: Embedder) -> list[IndexChange]:
    """Bring one entity's stored embedding up to date: embed if its text changed, delete it if
    it must have none. Idempotent; returns the index changes to apply after commit."""
    changes: list[IndexChange] = []
    touched: set[int] = set()
    for key in _keys(session, entity_type, entity_id):
        found = repo.entity_texts(session, *key)
        if found is None:
            # A removal is emitted even when no row was left to delete: the opt-out deletes
            # the rows itself, and the vector must still leave every saved index.
            communities = _entity_communities(session, key)
            if store.remove(session, [key]):
                touched.update(communities)
            index_id = _index_id(session, key)
            if index_id is not None:
                changes.extend(IndexChange(cid, _KIND[key[0]], index_id, None) for cid in sorted(communities))
            continue
        community_id, text = found
        text_hash = content_hash(text)
        row = store.get(session, key[0], key[1], embedder.model_id)
        if row is not None and row.content_hash == text_hash:
            continue
        vector = embedder.embed([text], role="passage")[0]
        store.put(
            session,
            community_id,
            key[0],
            key[1],
            model_id=embedder.model_id,
            text_hash=text_hash,
            vector=vector,
        )
        touched.add(community_id)
        index_id = _index_id(session, key)
        if index_id is not None:
            changes.append(IndexChange(community_id, _KIND[key[0]], index_id, vector, text_hash))
    for community_id in touched:
        store.bump_version(session, community_id)
    return changes


def apply_index_changes(changes: Iterable[IndexChange], model_id: str) -> None:
    """Incremental updates of saved indexes (after commit); a missing index waits for the refresh.

    A removal leaves the indexes of every model of the community, not only the current one:
    the folder of a previous model still holds the vector of someone who has since opted out.
    """
    for change in changes:
        if change.vector is None:
            for model in {model_id, *store.model_ids(change.community_id)}:
                store.update_index(change.community_id, model, change.kind, remove_ids=[change.index_id])
        else:
            ids = np.asarray([change.index_id], dtype=np.int64)
            store.update_index(
                change.community_id,
                model_id,
                change.kind,
                upsert=(ids, change.vector[None, :]),
                upsert_hashes=[change.content_hash] if change.content_hash is not None else None,
            )


@dataclass
class RefreshResult:
    embedded: int = 0
    deleted: int = 0
    remaining: int = 0
    reindex: list[int] = field(default_factory=list)  # communities whose index files must be rewritten
    communities: list[int] = field(default_factory=list)  # every community looked at


def refresh(
    session: Session,
    embedder: Embedder,
    *,
    community_ids: Collection[int] | None = None,
    budget: int = REFRESH_BUDGET,
    progress: store.Progress | None = None,
) -> RefreshResult:
    """Find stale or missing embeddings (text or model changed) and recompute up to `budget`."""
    result = RefreshResult()
    ids = list(community_ids) if community_ids is not None else repo.community_ids(session)
    result.communities = ids
    for community_id in ids:
        left = max(0, budget - result.embedded)
        snapshot = repo.load_snapshot(session, community_id)
        synced = store.sync(session, community_id, snapshot.texts(), embedder, limit=left, progress=progress)
        result.embedded += synced.embedded
        result.deleted += synced.deleted
        result.remaining += synced.remaining
        if synced.changed:
            store.bump_version(session, community_id)
        if synced.changed or not _indexes_present(session, snapshot, community_id, embedder.model_id):
            result.reindex.append(community_id)
    return result


def rebuild(
    session: Session,
    community_id: int,
    embedder: Embedder,
    *,
    force: bool = False,
    progress: store.Progress | None = None,
) -> store.SyncResult:
    """Every embedding of a community brought up to date, with no batch limit.

    `force` drops the stored vectors first, so that everything is embedded again (a changed
    engine that kept its model id, a suspected corruption).
    """
    if force:
        store.remove_community(session, community_id)
    snapshot = repo.load_snapshot(session, community_id)
    result = store.sync(session, community_id, snapshot.texts(), embedder, progress=progress)
    store.bump_version(session, community_id)
    return result


def communities_to_rebuild(session: Session, community_id: int | None) -> list[int]:
    if community_id is None:
        return repo.community_ids(session)
    if session.get(Community, community_id) is None:
        raise NotFound(f"community {community_id} not found", code="community_not_found")
    return [community_id]


def _expected_hashes(snapshot: repo.Snapshot, stored: Mapping[store.Key, str], kind: str) -> dict[int, str]:
    """Index id -> content hash of what the saved index of `kind` must hold (the stored rows
    of the snapshot's entities of that kind)."""
    out: dict[int, str] = {}
    for cid, key in snapshot.entities.items():
        if _KIND[key[0]] != kind or key not in stored:
            continue
        out[int(cid.split(":", 1)[1])] = stored[key]
    return out


def _saved_indexes(
    snapshot: repo.Snapshot, community_id: int, embedder: Embedder, stored: Mapping[store.Key, store.Stored]
) -> dict[ItemKind, tuple[VectorIndex, dict[str, int]]]:
    """The item indexes the worker keeps on disk, with each item's id in them (its row id):
    a fit searches them as they are instead of training new ones."""
    found: dict[ItemKind, tuple[VectorIndex, dict[str, int]]] = {}
    hashes = {key: value.content_hash for key, value in stored.items()}
    for kind in ITEM_KINDS:
        saved, on_disk = store.read_index_and_hashes(community_id, embedder.model_id, kind)
        if saved is None:
            continue  # not written yet: the fit builds its own from the stored vectors
        ids = {
            cid: key[1]
            for cid, key in snapshot.entities.items()
            if (item := snapshot.corpus.items.get(cid)) is not None and item.kind == kind and key in stored
        }
        # A file that does not hold exactly what is stored (a missed update, a vector of an
        # older text under the same id, a data directory left from another database) is not
        # trusted: the fit builds its own index instead.
        expected = _expected_hashes(snapshot, hashes, kind)
        if on_disk != expected or len(saved) != len(ids) or not all(i in saved for i in ids.values()):
            log.info("saved %s index of community %s is out of step; fitting without it", kind, community_id)
            continue
        found[kind] = (saved, ids)
    return found


def _indexes_present(session: Session, snapshot: repo.Snapshot, community_id: int, model_id: str) -> bool:
    """Every index file loads and holds exactly the stored vectors (by content hash)."""
    stored = store.stored_hashes(session, community_id, model_id)
    for kind in store.INDEX_KINDS:
        index, hashes = store.read_index_and_hashes(community_id, model_id, kind)
        if index is None or hashes != _expected_hashes(snapshot, stored, kind):
            return False
    return True


def write_indexes(
    session: Session, community_id: int, embedder: Embedder, *, progress: store.Progress | None = None
) -> dict[str, int]:
    """Rewrite a community's index files from its stored embeddings (one per kind)."""
    snapshot = repo.load_snapshot(session, community_id)
    stored = store.load(session, community_id, embedder.model_id)
    ids = {key: int(cid.split(":", 1)[1]) for cid, key in snapshot.entities.items()}
    groups = store.vectors_by_kind(stored, ids)
    hashes = store.hashes_by_kind(stored, ids)
    return store.write_indexes(
        community_id, embedder.model_id, embedder.dim, groups, hashes=hashes, progress=progress
    )


# --- serving --------------------------------------------------------------------------


@dataclass
class _Fitted:
    model: RecommenderModel | None  # None for a community with nothing to recommend yet
    snapshot: repo.Snapshot
    fingerprint: tuple[Any, ...]
    model_id: str
    checked_at: float
    fitted_at: float = 0.0
    fit_seconds: float = 0.0
    stale: bool = False  # a live check found the model out of date: refit whatever the fingerprint says
    # Kept serving under a previous model id while the store fills with the current model's
    # vectors (a model change): refitted when the worker's stamp moves, not on every request.
    awaiting: bool = False


class Recommender:
    """The per-process cache of fitted models and the request path.

    `embedder=None` uses `Settings.embedder`; tests pass the hashing embedder. A held model
    is used without looking at the database for `check_every` seconds, and, when fitting it
    took long, until fitting has cost at most `max_fit_share` of the time since: a busy large
    community changes every second, and refitting it on every change would spend the API's
    time fitting. What changed meanwhile is covered by the live checks of each request
    (blocks, opt-outs, departures, deleted items, moved gates); `None` refits on every change.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        check_every: float = CHECK_EVERY_S,
        max_fit_share: float | None = MAX_FIT_SHARE,
        max_communities: int = MAX_COMMUNITIES,
        background: Callable[[], Session] | None = None,
        fit_embed_max: int = FIT_EMBED_MAX,
    ) -> None:
        self._embedder = embedder
        self.check_every = check_every
        self.max_fit_share = max_fit_share
        self.max_communities = max_communities
        # With a session factory, a stale model keeps serving (live checks cover the gap)
        # while its successor is fitted in a thread: no request waits for a large fit.
        self._background = background
        self.fit_embed_max = fit_embed_max
        # Least recently used first: a process serving many communities keeps the busiest.
        self._fitted: OrderedDict[int, _Fitted] = OrderedDict()
        self._refitting: dict[int, threading.Thread] = {}
        self._locks: OrderedDict[int, threading.Lock] = OrderedDict()
        self._guard = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        return self._embedder or get_embedder()

    def invalidate(self, community_id: int) -> None:
        """Mark a held model stale (a live check found it out of date); the next request refits."""
        with self._guard:
            held = self._fitted.get(community_id)
            if held is not None:
                held.stale = True

    def _lock(self, community_id: int) -> threading.Lock:
        with self._guard:
            lock = self._locks.setdefault(community_id, threading.Lock())
            self._locks.move_to_end(community_id)
            # Bounded like the models: a process that saw many communities keeps the locks of
            # the recent ones (a lock in use is never dropped, so no fit runs twice at once).
            while len(self._locks) > 2 * self.max_communities:
                oldest, old_lock = next(iter(self._locks.items()))
                if old_lock.locked() or oldest == community_id:
                    break
                del self._locks[oldest]
            return lock

    def fitted(self, session: Session, community_id: int, *, now: datetime | None = None) -> _Fitted:
        embedder = self.embedder
        with self._guard:
            held = self._fitted.get(community_id)
            if held is not None:
                self._fitted.move_to_end(community_id)
        clock = time.monotonic()
        usable = held is not None and (held.model_id == embedder.model_id or held.awaiting)
        if held is not None and usable and not held.stale:
            if clock - held.checked_at < self.check_every:
                return held
            if self.max_fit_share and clock - held.fitted_at < held.fit_seconds / self.max_fit_share:
                return held
        with self._lock(community_id):
            held = self._fitted.get(community_id)
            stamp = repo.fingerprint(session, community_id)
            if held is not None and usable and not held.stale and held.fingerprint == stamp:
                held.checked_at = clock
                return held
            if held is not None and self._background is not None:
                # Also after a model change: the previous model serves while its successor
                # is fitted (and waits for the store to fill, see _fit).
                held.checked_at = clock  # no fingerprint query per request while refitting
                self._refit_in_background(community_id, embedder)
                return held
            fresh = self._fit(session, community_id, embedder, stamp, now, fallback=held)
            self._keep(community_id, fresh)
            return fresh

    def _keep(self, community_id: int, fitted: _Fitted) -> None:
        with self._guard:
            self._fitted[community_id] = fitted
            self._fitted.move_to_end(community_id)
            while len(self._fitted) > self.max_communities:
                self._fitted.popitem(last=False)

    def _refit_in_background(self, community_id: int, embedder: Embedder) -> None:
        with self._guard:
            if community_id in self._refitting:
                return
            thread = threading.Thread(
                target=self._refit,
                args=(community_id, embedder),
                name=f"hearth-refit-{community_id}",
                daemon=True,
            )
            self._refitting[community_id] = thread
        thread.start()

    def _refit(self, community_id: int, embedder: Embedder) -> None:
        assert self._background is not None
        try:
            with session_scope(factory=self._background) as session:
                stamp = repo.fingerprint(session, community_id)
                with self._guard:
                    held = self._fitted.get(community_id)
                fresh = self._fit(session, community_id, embedder, stamp, None, fallback=held)
            self._keep(community_id, fresh)
        except Exception:  # the held model keeps serving; the next stale check tries again
            log.exception("background refit of community %s failed", community_id)
        finally:
            with self._guard:
                self._refitting.pop(community_id, None)

    def wait_for_refits(self, timeout: float | None = None) -> None:
        """Join running background refits (tests, graceful shutdown)."""
        with self._guard:
            threads = list(self._refitting.values())
        for thread in threads:
            thread.join(timeout)

    def _fit(
        self,
        session: Session,
        community_id: int,
        embedder: Embedder,
        stamp: tuple[Any, ...],
        now: datetime | None,
        *,
        fallback: _Fitted | None = None,
    ) -> _Fitted:
        """Fit from the stored vectors, embedding at most `fit_embed_max` missing ones.

        When more are missing (a model change, a forced rebuild: the worker's refresh is
        filling the store), nothing is embedded here: `fallback`, the model already held,
        keeps serving and is retried when the worker's stamp moves; with nothing held, the
        missing vectors are left empty, so those entities are ranked by behaviour and
        popularity alone until the store has them.
        """
        started = time.perf_counter()
        snapshot = repo.load_snapshot(session, community_id, now=now)
        corpus = snapshot.corpus
        model = None
        if corpus.members or corpus.items:
            stored = store.load(session, community_id, embedder.model_id)
            # Stored vectors are used even when their text has since changed: the worker is
            # re-embedding it and will bump the stamp; only what has none is embedded here.
            vectors = {cid: stored[key].vector for cid, key in snapshot.entities.items() if key in stored}
            missing = [cid for cid in snapshot.entities if cid not in vectors]
            if len(missing) > self.fit_embed_max:
                log.info(
                    "community %s: %d of %d vectors of %s not stored yet; waiting for the worker",
                    community_id,
                    len(missing),
                    len(snapshot.entities),
                    embedder.model_id,
                )
                if fallback is not None and fallback.model is not None:
                    fallback.fingerprint = stamp  # retried when the worker's stamp moves
                    fallback.checked_at = time.monotonic()
                    fallback.stale = False
                    fallback.awaiting = fallback.model_id != embedder.model_id
                    return fallback
                empty = np.zeros(embedder.dim, np.float32)
                vectors.update((cid, empty) for cid in missing)
            model = RecommenderModel.fit(
                corpus,
                embedder,
                vectors=vectors,
                now=now,
                indexes=_saved_indexes(snapshot, community_id, embedder, stored),
            )
        log.info(
            "fitted community %s (%d members, %d items) in %.0f ms",
            community_id,
            len(corpus.members),
            len(corpus.items),
            1000 * (time.perf_counter() - started),
        )
        took = time.perf_counter() - started
        return _Fitted(model, snapshot, stamp, embedder.model_id, time.monotonic(), time.monotonic(), took)

    def recommend(
        self,
        session: Session,
        actor: Actor,
        community_id: int,
        kind: Kind,
        *,
        limit: int = 10,
        now: datetime | None = None,
    ) -> RecommendationsOut:
        # Personal, like follows and blocks: reasons show whom the member follows and tips,
        # which an integration holding a community API key has no business reading.
        actor.require_personal()
        ctx = community_context(session, actor, community_id)
        ctx.require_member()
        if not 1 <= limit <= 50:
            raise InvalidInput("limit must be between 1 and 50", code="invalid_limit")
        now = now or utcnow()
        held = self.fitted(session, community_id)
        opted_out = actor.user.recommendations_opt_out
        if held.model is None:
            return RecommendationsOut(kind=kind, personalised=not opted_out, items=[])
        snapshot = held.snapshot
        blocked = social.blocked_ids(session, actor.id)
        exclude = _excluded(ctx, snapshot, blocked, now)
        not_interested = repo.feedback_targets(session, community_id, actor.id)
        seats = _seats(session, snapshot, actor.id) if kind == "course" else frozenset()

        def can_access(item: Item) -> bool:
            gate = snapshot.gates.get(item.id)
            return gate is None or item.id in seats or ctx.meets_tier(gate.min_tier_id)

        me = repo.member_id(actor.id)
        # A member who opted out is asked for as nobody: the model then has no taste or
        # history to use, which leaves popularity and freshness.
        asked_as = "anonymous" if opted_out else me
        recs = held.model.recommend(
            asked_as,
            kind,
            k=limit * OVERFETCH,
            exclude=exclude | {me},
            not_interested=not_interested,
            can_access=can_access,
            upgrade_slots=1,
            now=now,
        )
        recs = self._still_valid(
            session, ctx, community_id, [r for r in recs if r.id not in exclude], now, seats
        )[:limit]
        hidden = _hidden_named(session, community_id, blocked, recs)
        items = [self._present(ctx, snapshot, rec, opted_out, hidden) for rec in recs]
        return RecommendationsOut(kind=kind, personalised=not opted_out, items=items)

    def _still_valid(
        self,
        session: Session,
        ctx: CommunityContext,
        community_id: int,
        recs: list[Recommendation],
        now: datetime,
        seats: Collection[str] = frozenset(),
    ) -> list[Recommendation]:
        """Drop items whose live state no longer allows them (the model may be minutes old)."""
        if not recs:
            return recs
        if recs[0].kind == "people":
            # Members who left, were disabled or opted out since the fit are never shown.
            ids = {int(r.id.split(":", 1)[1]) for r in recs}
            live_people = repo.live_members(session, community_id, ids)
            kept_people = [r for r in recs if int(r.id.split(":", 1)[1]) in live_people]
            if len(kept_people) < len(recs):
                self.invalidate(community_id)
            return kept_people
        live = repo.live_gates(session, [r.id for r in recs], now=now)
        kept = []
        stale = False
        for rec in recs:
            gate = live.get(rec.id)
            if gate is None or ctx.role is None or not ctx.role.at_least(gate.min_role):
                stale = True
                continue
            if rec.locked == (rec.id in seats or ctx.meets_tier(gate.min_tier_id)):
                stale = True  # the gate moved since the fit: neither wording is right now
                continue
            kept.append(rec)
        if stale:
            self.invalidate(community_id)
        return kept

    def _present(
        self,
        ctx: CommunityContext,
        snapshot: repo.Snapshot,
        rec: Recommendation,
        opted_out: bool,
        hidden_named: Collection[str] = (),
    ) -> RecommendationOut:
        lang: Lang = (ctx.actor.user.language or Language.EN).value  # type: ignore[assignment]
        reason = rec.reason
        if reason.member is not None and reason.member in hidden_named:
            reason = Reason("for_you", {})
        params: dict[str, str | int] = dict(reason.params)
        code, text = reason.code, render(reason, lang)
        if rec.locked:
            # The model names the tier by its corpus key (free/member/vip, worded per language);
            # clients also get the community's own name for it.
            gate = snapshot.gates.get(rec.id)
            tier = ctx.tiers.get(gate.min_tier_id) if gate and gate.min_tier_id else None
            if tier is not None:
                params["tier_name"] = tier.name
        elif opted_out:
            params["basis"] = code
            code, text = NOT_PERSONALISED, text + _OPTED_OUT_NOTE[lang]
        corpus = snapshot.corpus
        if rec.kind == "people":
            title = corpus.members[rec.id].name if rec.id in corpus.members else rec.id
        else:
            title = corpus.items[rec.id].title if rec.id in corpus.items else rec.id
        return RecommendationOut(
            id=rec.id,
            kind=rec.kind,
            entity_id=int(rec.id.split(":", 1)[1]),
            title=title,
            score=rec.score,
            reason=ReasonOut(code=code, params=params, text=text),
            locked=rec.locked,
        )


def _hidden_named(
    session: Session, community_id: int, blocked: Collection[int], recs: list[Recommendation]
) -> set[str]:
    """Members named in this page's reasons whom the member must not see named: blocked either
    way, or (since the fit) opted out, left or disabled. Checked live, once for the people the
    page names, since the model may be minutes old; by id, so a visible member who shares a
    display name with a hidden one keeps their name."""
    named = {rec.reason.member for rec in recs if rec.reason.member is not None}
    if not named:
        return set()
    uids = {mid: int(mid.split(":", 1)[1]) for mid in named}
    visible = repo.live_members(session, community_id, set(uids.values()) - set(blocked))
    return {mid for mid, uid in uids.items() if uid not in visible}


def _excluded(
    ctx: CommunityContext, snapshot: repo.Snapshot, blocked: Collection[int], now: datetime
) -> set[str]:
    """Everything the request must never show, whatever the model thinks of it."""
    out = {repo.member_id(uid) for uid in blocked}
    for uid in blocked:
        out.update(snapshot.items_by_author.get(uid, ()))
    role = ctx.role
    # A role gate (an admins-only room) is not something to upgrade to: never shown.
    out |= {iid for iid, needed in snapshot.role_gated.items() if role is None or not role.at_least(needed)}
    out |= {iid for iid, end in snapshot.ends_at.items() if end < now}
    return out


def _seats(session: Session, snapshot: repo.Snapshot, user_id: int) -> frozenset[str]:
    """Tier-gated courses the member holds a seat in (bought with chips): open to them
    whatever their tier, so never shown as an upgrade."""
    gated = [
        int(iid.split(":", 1)[1])
        for iid, gate in snapshot.gates.items()
        if iid.startswith("course:") and gate.min_tier_id is not None
    ]
    return frozenset(
        repo.item_id("course", cid) for cid in courses_repo.seat_course_ids(session, gated, user_id)
    )


# --- feedback -------------------------------------------------------------------------


def _target_visible(session: Session, ctx: CommunityContext, community_id: int, target: str) -> bool:
    """Whether the member may see the target: an item of this community that is live (not
    deleted, archived, cancelled or unpublished) behind no role gate the member lacks. A tier
    gate is no secret (its items are shown as upgrade suggestions), so it does not count.
    Anything else answers exactly like a target that does not exist."""
    parsed = repo.parse_target(target)
    if parsed is None:
        return False
    prefix, row_id = parsed
    if prefix == "m":
        return repo.is_active_member(session, community_id, row_id)
    if repo.item_community(session, prefix, row_id) != community_id:
        return False
    gate = repo.live_gates(session, [target]).get(target)
    return gate is not None and ctx.role is not None and ctx.role.at_least(gate.min_role)


def add_feedback(session: Session, actor: Actor, community_id: int, target: str, kind: str) -> FeedbackOut:
    """Remember "not interested" (idempotent: a repeat answers replayed=true)."""
    actor.require_personal()
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    if target == repo.member_id(actor.id):
        raise _invalid_target()
    if not _target_visible(session, ctx, community_id, target):
        raise _target_not_found()
    feedback_kind = FeedbackKind(kind)
    existing = repo.feedback(session, community_id, actor.id, target, feedback_kind)
    if existing is not None:
        return FeedbackOut(target=target, kind=kind, created_at=existing.created_at, replayed=True)
    row = RecommendationFeedback(
        community_id=community_id, user_id=actor.id, target=target, kind=feedback_kind
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        winner = repo.feedback(session, community_id, actor.id, target, feedback_kind)
        if winner is None:
            raise
        return FeedbackOut(target=target, kind=kind, created_at=winner.created_at, replayed=True)
    return FeedbackOut(target=target, kind=kind, created_at=row.created_at)


def remove_feedback(session: Session, actor: Actor, community_id: int, target: str) -> None:
    actor.require_personal()
    community_context(session, actor, community_id).require_member()
    repo.delete_feedback(session, community_id, actor.id, target)
