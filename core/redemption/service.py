"""Redemption rules: who lists offers, who redeems, who fulfils or cancels.

An offer is listed by its chip's issuer (for the community chip: admins).
Redeeming claims stock and places a ledger hold inside one savepoint, so a
refusal (out of stock, over the limit, not enough chips) changes nothing.
Fulfilment captures the hold in one REDEEM transaction; cancellation and
expiry void it and give the stock back. Every step is idempotent: a retried
redeem with the same `Idempotency-Key` returns the first order, a second
fulfil or cancel of the same order returns it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core import audit, jobs
from core.access import Actor, CommunityContext, community_context, context_via
from core.clock import utcnow
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.ledger import service as ledger
from core.ledger.errors import key_reused
from core.ledger.types import Entry, HoldUse, Leg
from core.models import (
    AccessGrant,
    Chip,
    HoldStatus,
    LedgerHold,
    OrderStatus,
    RedemptionOffer,
    RedemptionOrder,
    Role,
    Settlement,
    TxKind,
)
from core.pagination import paginate
from core.redemption import access
from core.redemption import repository as repo
from core.redemption.schemas import AccessOut, OfferIn, OfferOut, OfferPatch, OrderOut, RedeemIn
from core.schemas import PageOut, refuse_nulls

ORDER_CHANGED_JOB = "hearth.redemption.order_changed"
_OFFER_FIELDS = [
    "title",
    "description",
    "access_ref",
    "trial_days",
    "price",
    "stock",
    "per_member_limit",
    "active",
    "hold_seconds",
    "instant",
]


def _offer_missing() -> NotFound:
    return NotFound("offer not found", code="offer_not_found")


def _order_missing() -> NotFound:
    return NotFound("redemption order not found", code="order_not_found")


def is_issuer(ctx: CommunityContext, chip: Chip) -> bool:
    """A personal chip's issuer; for the community chip, the community's admins."""
    if chip.issuer_id is not None:
        return chip.issuer_id == ctx.actor.id and ctx.is_member
    return ctx.role is not None and ctx.role.at_least(Role.ADMIN)


def _require_issuer(ctx: CommunityContext, chip: Chip) -> None:
    ctx.require_member()
    if not is_issuer(ctx, chip):
        raise PermissionDenied("only the chip's issuer manages its offers and orders", code="not_issuer")


def _chip_in(session: Session, community_id: int, chip_id: int) -> Chip:
    chip = session.get(Chip, chip_id)
    if chip is None or chip.community_id != community_id:
        raise NotFound("chip not found", code="chip_not_found")
    return chip


def _load_offer(session: Session, actor: Actor, offer_id: int) -> tuple[RedemptionOffer, CommunityContext]:
    offer = session.get(RedemptionOffer, offer_id)
    if offer is None:
        raise _offer_missing()
    return offer, context_via(session, actor, offer.community_id, _offer_missing())


# --- offers --------------------------------------------------------------------------


def create_offer(session: Session, actor: Actor, community_id: int, data: OfferIn) -> OfferOut:
    ctx = community_context(session, actor, community_id)
    chip = _chip_in(session, community_id, data.chip_id)
    _require_issuer(ctx, chip)
    if not chip.redeemable:
        raise Conflict("this chip is not redeemable", code="chip_not_redeemable")
    if data.settlement == Settlement.ISSUER and chip.issuer_id is None:
        # The community chip has no issuer wallet: its redemptions can only be burned.
        raise InvalidInput("community chip offers settle by burning", code="invalid_settlement")
    access_ref = access.validate_offer(
        session, ctx, data.kind, data.access_ref, data.trial_days, data.instant
    )
    offer = RedemptionOffer(
        community_id=community_id, created_by=actor.id, **{**data.model_dump(), "access_ref": access_ref}
    )
    session.add(offer)
    session.flush()
    audit.record(
        session,
        actor,
        "redemption.offer_created",
        offer,
        community_id=community_id,
        after=audit.snapshot(offer),
    )
    return OfferOut.model_validate(offer)


def update_offer(session: Session, actor: Actor, offer_id: int, patch: OfferPatch) -> OfferOut:
    offer, ctx = _load_offer(session, actor, offer_id)
    chip = session.get(Chip, offer.chip_id)
    assert chip is not None
    _require_issuer(ctx, chip)
    locked = repo.lock_offer(session, offer_id)
    assert locked is not None
    changes = patch.model_dump(exclude_unset=True)
    refuse_nulls(changes, ("title", "description", "price", "active", "instant"))
    # What the offer grants is checked when it changes or the offer is put on sale again;
    # an offer listed before these rules can always be edited or taken off sale.
    if {"access_ref", "trial_days", "instant"} & changes.keys() or changes.get("active") is True:
        access_ref = access.validate_offer(
            session,
            ctx,
            locked.kind,
            changes.get("access_ref", locked.access_ref),
            changes.get("trial_days", locked.trial_days),
            changes.get("instant", locked.instant),
        )
        if "access_ref" in changes:
            changes["access_ref"] = access_ref
    audit.apply_changes(
        session,
        actor,
        "redemption.offer_updated",
        locked,
        changes,
        _OFFER_FIELDS,
        community_id=locked.community_id,
    )
    return OfferOut.model_validate(locked)


def get_offer(session: Session, actor: Actor, offer_id: int) -> OfferOut:
    offer, _ = _load_offer(session, actor, offer_id)
    return OfferOut.model_validate(offer)


def list_offers(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    chip_id: int | None,
    active: bool | None,
    cursor: str | None,
    limit: int,
) -> PageOut[OfferOut]:
    community_context(session, actor, community_id)
    stmt = repo.offers_of(community_id, chip_id=chip_id, active=active)
    return (
        paginate(session, stmt, RedemptionOffer.id, cursor=cursor, limit=limit)
        .map(OfferOut.model_validate)
        .out()
    )


# --- redeeming ---------------------------------------------------------------------------


def _order_views(session: Session, orders: Sequence[RedemptionOrder]) -> list[OrderOut]:
    offers = repo.offers_by_id(session, sorted({o.offer_id for o in orders}))
    expiries = repo.hold_expiries(session, [o.hold_id for o in orders if o.hold_id is not None])
    names = repo.user_names(session, sorted({o.member_id for o in orders}))
    grants = repo.grants_of_orders(session, [o.id for o in orders if o.status == OrderStatus.FULFILLED])
    tier_keys = (
        {
            t.id: t.key
            for t in repo.tiers_of(session, orders[0].community_id)
            if any(g.tier_id == t.id for g in grants.values())
        }
        if grants
        else {}
    )
    return [
        OrderOut(
            id=o.id,
            community_id=o.community_id,
            offer_id=o.offer_id,
            offer_title=offers[o.offer_id].title,
            offer_kind=offers[o.offer_id].kind,
            member_id=o.member_id,
            member_name=names.get(o.member_id, ""),
            chip_id=o.chip_id,
            quantity=o.quantity,
            unit_price=o.unit_price,
            total=o.total,
            settlement=o.settlement,
            status=o.status,
            hold_id=o.hold_id,
            hold_expires_at=expiries.get(o.hold_id) if o.hold_id is not None else None,
            transaction_id=o.transaction_id,
            note=o.note,
            resolved_by=o.resolved_by,
            resolved_at=o.resolved_at,
            created_at=o.created_at,
            access_ref=o.access_ref,
            trial_days=o.trial_days,
            access=_access_out(grants.get(o.id), tier_keys),
        )
        for o in orders
    ]


def _access_out(grant: AccessGrant | None, tier_keys: dict[int, str]) -> AccessOut | None:
    if grant is None:
        return None
    return AccessOut(
        kind=grant.kind,
        tier=tier_keys.get(grant.tier_id) if grant.tier_id is not None else None,
        course_id=grant.course_id,
        ends_at=grant.ends_at,
        revoked_at=grant.revoked_at,
    )


def order_view(session: Session, order: RedemptionOrder) -> OrderOut:
    return _order_views(session, [order])[0]


def redemption_key(actor_id: int, client_key: str | None) -> str:
    return ledger.client_key("redeem", actor_id, client_key)


def _replay(order: RedemptionOrder, offer_id: int, data: RedeemIn) -> RedemptionOrder:
    if (order.offer_id, order.quantity, order.note) != (offer_id, data.quantity, data.note):
        raise key_reused()
    return order


def redeem(
    session: Session, actor: Actor, offer_id: int, data: RedeemIn, client_key: str | None
) -> tuple[OrderOut, bool]:
    """Place an order and hold its chips. Returns (order, created); a retry returns the first order."""
    actor.require_personal()
    key = redemption_key(actor.id, client_key)
    offer, ctx = _load_offer(session, actor, offer_id)
    ctx.require_member()
    # Requests with one key run one at a time (even for different offers): a retry that
    # arrives while the first attempt is in flight waits for it and finds its order.
    ledger.lock_key(session, key)
    existing = repo.order_by_key(session, key)
    if existing is not None:
        return order_view(session, _replay(existing, offer_id, data)), False
    # The offer's row lock serialises redemptions of one offer: the per-member count below
    # cannot be raced.
    locked = repo.lock_offer(session, offer_id)
    assert locked is not None
    offer = locked
    chip = session.get(Chip, offer.chip_id)
    assert chip is not None
    if not offer.active:
        raise Conflict("this offer is not available", code="offer_inactive")
    if not chip.redeemable or chip.expired:
        raise Conflict("this chip is not redeemable", code="chip_not_redeemable")
    if chip.frozen:
        raise Conflict("this chip is frozen", code="chip_frozen")
    if chip.issuer_id == actor.id:
        raise Conflict("issuers cannot redeem their own offers", code="own_offer")
    if offer.per_member_limit is not None:
        used = repo.redeemed_quantity(session, offer.id, actor.id)
        if used + data.quantity > offer.per_member_limit:
            raise Conflict(
                f"at most {offer.per_member_limit} per member",
                code="redemption_limit_reached",
                extra={"limit": offer.per_member_limit, "used": used},
            )
    access.check_redeemable(session, offer, chip, actor.id, data.quantity)
    total = offer.price * data.quantity
    now = utcnow()
    expires_at = now + timedelta(seconds=offer.hold_seconds) if offer.hold_seconds else None
    if offer.instant:
        # Granted in this request: the membership is locked before any ledger account (as
        # in fulfilment), and the wallet with the settlement account at once, in id order.
        access.lock_member(session, offer.community_id, actor.id)
    # All or nothing: a refusal after the stock is claimed rolls the savepoint back.
    with session.begin_nested():
        if not repo.claim_stock(session, offer.id, data.quantity):
            raise Conflict("this offer is out of stock", code="out_of_stock")
        account = ledger.open_account(session, chip, actor.id)
        order = RedemptionOrder(
            community_id=offer.community_id,
            offer_id=offer.id,
            member_id=actor.id,
            chip_id=chip.id,
            quantity=data.quantity,
            unit_price=offer.price,
            total=total,
            settlement=offer.settlement,
            # The terms as paid: an edit of the offer before fulfilment does not change them.
            access_ref=offer.access_ref,
            trial_days=offer.trial_days,
            status=OrderStatus.PENDING,
            idempotency_key=key,
            note=data.note,
            created_at=now,  # the request's one clock: an instant order resolves at this moment
        )
        locked_ids = [account.id]
        if offer.instant:
            locked_ids.append(_settlement_account(session, order, chip))
        ledger.lock_accounts(session, locked_ids)
        session.add(order)
        session.flush()
        hold = ledger.place_hold(
            session,
            account_id=account.id,
            amount=total,
            key=key,
            expires_at=expires_at,
            subject=("redemption_order", order.id),
        )
        order.hold_id = hold.id
        session.flush()
        granted = None
        if offer.instant:
            granted = access.grant(session, order, offer, now)
            _capture(session, order, chip, hold, now)
    session.refresh(offer)
    audit.record(
        session,
        actor,
        "redemption.redeemed",
        order,
        community_id=order.community_id,
        after=audit.snapshot(order, ["offer_id", "quantity", "total", "hold_id"]),
    )
    if offer.instant:
        _record_fulfilled(session, actor, order, granted)
    else:
        jobs.enqueue(session, ORDER_CHANGED_JOB, order.id, "requested")
    return order_view(session, order), True


# --- both sides' views ---------------------------------------------------------------


def my_orders(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    status: OrderStatus | None,
    cursor: str | None,
    limit: int,
) -> PageOut[OrderOut]:
    community_context(session, actor, community_id).require_member()
    stmt = repo.orders_of_member(community_id, actor.id, status)
    page = paginate(session, stmt, RedemptionOrder.id, cursor=cursor, limit=limit)
    return page.with_items(_order_views(session, page.items)).out()


def issuer_orders(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    status: OrderStatus | None,
    cursor: str | None,
    limit: int,
) -> PageOut[OrderOut]:
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    admin = ctx.role is not None and ctx.role.at_least(Role.ADMIN)
    stmt = repo.orders_for_issuer(community_id, actor.id, include_community_chip=admin, status=status)
    page = paginate(session, stmt, RedemptionOrder.id, cursor=cursor, limit=limit)
    return page.with_items(_order_views(session, page.items)).out()


def _load_order(
    session: Session, actor: Actor, order_id: int
) -> tuple[RedemptionOrder, Chip, CommunityContext, bool]:
    """The order, its chip, the context and whether the actor is on the issuer's side.

    Anyone but the member and the issuer gets a 404: orders are private to both sides.
    """
    order = session.get(RedemptionOrder, order_id)
    if order is None:
        raise _order_missing()
    ctx = context_via(session, actor, order.community_id, _order_missing())
    chip = session.get(Chip, order.chip_id)
    assert chip is not None
    issuer_side = ctx.is_member and is_issuer(ctx, chip)
    if order.member_id != actor.id and not issuer_side:
        raise _order_missing()
    return order, chip, ctx, issuer_side


def get_order(session: Session, actor: Actor, order_id: int) -> OrderOut:
    order, *_ = _load_order(session, actor, order_id)
    return order_view(session, order)


# --- settling ------------------------------------------------------------------------------


def fulfil_order(session: Session, actor: Actor, order_id: int) -> OrderOut:
    """The issuer delivered: capture the hold (burn or pay the issuer). Idempotent."""
    order, chip, ctx, issuer_side = _load_order(session, actor, order_id)
    if not issuer_side:
        raise PermissionDenied("only the chip's issuer fulfils orders", code="not_issuer")
    offer = session.get(RedemptionOffer, order.offer_id)
    assert offer is not None
    if offer.kind in access.ACCESS_KINDS and not (ctx.role is not None and ctx.role.at_least(Role.ADMIN)):
        raise PermissionDenied(
            "only admins grant access to the community's tiers and courses", code="access_offer_not_allowed"
        )
    locked = repo.lock_order(session, order_id)
    assert locked is not None and locked.hold_id is not None
    order = locked
    if order.status == OrderStatus.FULFILLED:
        return order_view(session, order)
    if order.status != OrderStatus.PENDING:
        raise Conflict(f"this order is {order.status.value}", code="order_not_pending")
    hold = session.get(LedgerHold, order.hold_id, populate_existing=True)
    assert hold is not None
    if hold.status != HoldStatus.PENDING or (hold.expires_at is not None and hold.expires_at <= utcnow()):
        raise Conflict("this order's hold has expired", code="order_expired")
    now = utcnow()
    # The access first (it locks the membership, which comes before ledger accounts); a
    # refusal here leaves the order pending and nothing written.
    granted = access.grant(session, order, offer, now)
    _capture(session, order, chip, hold, now)
    order.resolved_by = actor.id
    session.flush()
    _record_fulfilled(session, actor, order, granted)
    return order_view(session, order)


def _settlement_account(session: Session, order: RedemptionOrder, chip: Chip) -> int:
    """Where the order's chips go: the issuer's wallet, or the issuance account (burned)."""
    if order.settlement == Settlement.ISSUER and chip.issuer_id is not None:
        return ledger.open_account(session, chip, chip.issuer_id).id
    return ledger.issuance_account(session, chip.id).id


def _capture(session: Session, order: RedemptionOrder, chip: Chip, hold: LedgerHold, now: datetime) -> None:
    """Post the order's REDEEM transaction from its hold and mark it fulfilled."""
    target = _settlement_account(session, order, chip)
    ledger.lock_accounts(session, [hold.account_id, target])
    posted = ledger.post(
        session,
        Entry(
            community_id=order.community_id,
            kind=TxKind.REDEEM,
            key=f"redeem-fulfil:{order.id}",
            legs=(Leg(hold.account_id, chip.id, -order.total), Leg(target, chip.id, order.total)),
            memo=f"redemption #{order.id}",
            subject_type="redemption_order",
            subject_id=order.id,
            holds=(HoldUse(hold.id, order.total),),
        ),
    )
    order.status = OrderStatus.FULFILLED
    order.transaction_id = posted.transaction_id
    order.resolved_at = now
    session.flush()


def _record_fulfilled(
    session: Session, actor: Actor, order: RedemptionOrder, granted: AccessGrant | None
) -> None:
    after: dict[str, object] = {
        "transaction_id": order.transaction_id,
        "settlement": order.settlement.value,
        "instant": order.resolved_by is None,
    }
    if granted is not None:
        after["access_grant_id"] = granted.id
    audit.record(session, actor, "redemption.fulfilled", order, community_id=order.community_id, after=after)
    jobs.enqueue(session, ORDER_CHANGED_JOB, order.id, "fulfilled")


def _release(session: Session, order: RedemptionOrder, status: OrderStatus, by: int | None) -> None:
    """Void the order's hold and give its stock back. Call under the offer and order locks."""
    assert order.hold_id is not None
    hold = session.get(LedgerHold, order.hold_id)
    assert hold is not None
    ledger.lock_accounts(session, [hold.account_id])
    ledger.void_hold(
        session,
        order.hold_id,
        status=HoldStatus.EXPIRED if status == OrderStatus.EXPIRED else HoldStatus.VOIDED,
    )
    repo.return_stock(session, order.offer_id, order.quantity)
    order.status = status
    order.resolved_by = by
    order.resolved_at = utcnow()
    session.flush()


def cancel_order(session: Session, actor: Actor, order_id: int) -> OrderOut:
    """The member (while pending) or the issuer cancels: chips and stock come back. Idempotent."""
    order, _, _, _ = _load_order(session, actor, order_id)
    # Lock order: offer, then order, then (inside void_hold) the ledger account.
    repo.lock_offer(session, order.offer_id)
    locked = repo.lock_order(session, order_id)
    assert locked is not None
    order = locked
    if order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        return order_view(session, order)  # released either way: the chips and stock are back
    if order.status != OrderStatus.PENDING:
        raise Conflict(f"this order is {order.status.value}", code="order_not_pending")
    if _hold_ran_out(session, order):
        # It expired before the cancellation came: record what happened, as the sweep would.
        _release(session, order, OrderStatus.EXPIRED, None)
        jobs.enqueue(session, ORDER_CHANGED_JOB, order.id, "expired")
        return order_view(session, order)
    _release(session, order, OrderStatus.CANCELLED, actor.id)
    audit.record(
        session,
        actor,
        "redemption.cancelled",
        order,
        community_id=order.community_id,
        after={"by": "member" if actor.id == order.member_id else "issuer"},
    )
    jobs.enqueue(session, ORDER_CHANGED_JOB, order.id, "cancelled")
    return order_view(session, order)


UnitOfWork = Callable[[], AbstractContextManager[Session]]


def _units(target: Session | UnitOfWork) -> UnitOfWork:
    """A factory of units of work (the beat task passes `session_scope`), or one session for all."""
    if isinstance(target, Session):
        return lambda: nullcontext(target)
    return target


def _hold_ran_out(session: Session, order: RedemptionOrder, now: datetime | None = None) -> bool:
    """True once the order's hold is past its expiry or was expired by the ledger's sweep."""
    assert order.hold_id is not None
    hold = session.get(LedgerHold, order.hold_id, populate_existing=True)
    assert hold is not None
    if hold.status != HoldStatus.PENDING:
        return True
    return hold.expires_at is not None and hold.expires_at <= (now or utcnow())


def expire_order(session: Session, order_id: int, now: datetime | None = None) -> bool:
    """Expire one pending order whose hold ran out (or was expired by the ledger).

    Locks like a cancellation (offer, order, account). False when it is not due (any more):
    fulfilled, cancelled or expired meanwhile.
    """
    now = now or utcnow()
    order = session.get(RedemptionOrder, order_id)
    if order is None:
        return False
    repo.lock_offer(session, order.offer_id)
    locked = repo.lock_order(session, order_id)
    if locked is None or locked.status != OrderStatus.PENDING or locked.hold_id is None:
        return False
    if not _hold_ran_out(session, locked, now):
        return False
    _release(session, locked, OrderStatus.EXPIRED, None)
    jobs.enqueue(session, ORDER_CHANGED_JOB, locked.id, "expired")
    return True


def expire_orders(units: Session | UnitOfWork, now: datetime | None = None, *, limit: int = 500) -> list[int]:
    """Expire pending orders whose hold ran out; returns their ids. Idempotent.

    One short read lists the due orders; given a unit-of-work factory (the beat task
    passes `session_scope`), each order is then expired in its own transaction, so the
    sweep never holds one order's locks while waiting for another's.
    """
    now = now or utcnow()
    run = _units(units)
    with run() as session:
        due = repo.expired_order_ids(session, now, limit)
    done = []
    for order_id in due:
        with run() as session:
            if expire_order(session, order_id, now):
                done.append(order_id)
    return done


# --- notifications (called from the task) ---------------------------------------------------


def notify_order(session: Session, order_id: int, change: str) -> int:
    """Tell the other side about a state change: issuers hear of requests, instant
    fulfilments (the member's own redemption) and member cancellations; members of
    fulfilment, issuer cancellations and expiry."""
    from core.notifications import service as notifications

    order = session.get(RedemptionOrder, order_id)
    if order is None:
        return 0
    offer = session.get(RedemptionOffer, order.offer_id)
    chip = session.get(Chip, order.chip_id)
    assert offer is not None and chip is not None
    issuer_id = chip.issuer_id if chip.issuer_id is not None else offer.created_by
    recipient: int = order.member_id
    actor_id: int | None = order.resolved_by
    instant = change == "fulfilled" and order.resolved_by is None  # the member's own redemption
    if change == "requested" or instant or (change == "cancelled" and order.resolved_by == order.member_id):
        recipient, actor_id = issuer_id, order.member_id
    if recipient == actor_id:
        return 0
    return int(
        notifications.chip_notice(
            session,
            user_id=recipient,
            community_id=order.community_id,
            kind=f"redemption_{change}",
            subject_type="redemption_order",
            subject_id=order.id,
            actor_id=actor_id,
            data={
                "offer_id": offer.id,
                "title": offer.title,
                "quantity": order.quantity,
                "total": order.total,
            },
        )
    )
