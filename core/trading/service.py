"""Trading rules: pairs and their guard rails, placing and cancelling orders, swap offers.

Placing an order takes the pair's row lock, checks the guard rails, plans the
fills against the book (`matching`), locks every ledger account the plan can
touch in id order, then writes everything inside one savepoint: the order and
its hold, self-trade cancellations, and one 4-leg TRADE transaction per fill.
A refusal at any point leaves nothing behind.

Lock order everywhere (see the package docstring): idempotency key, then pair
row, then order rows, then ledger accounts; for swaps: key, then swap row, then
ledger accounts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, jobs
from core.access import Actor, CommunityContext, community_context, context_via
from core.clock import as_utc, utcnow
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.ledger import errors as ledger_errors
from core.ledger import service as ledger
from core.ledger.errors import key_reused
from core.ledger.types import Entry, HoldUse, Leg
from core.models import (
    Chip,
    HoldStatus,
    LedgerAccount,
    LedgerHold,
    Membership,
    MembershipStatus,
    Role,
    Side,
    SwapOffer,
    SwapStatus,
    Trade,
    TradeOrder,
    TradeOrderStatus,
    TradingPair,
    TxKind,
)
from core.pagination import paginate
from core.schemas import PageOut, refuse_nulls
from core.social import errors as social_errors
from core.social import repository as social_repo
from core.trading import matching
from core.trading import repository as repo
from core.trading.schemas import (
    BookOut,
    GuardsIn,
    Level,
    OrderIn,
    PairIn,
    PairOut,
    PlacedOut,
    SwapIn,
    SwapOut,
    TradeOrderOut,
    TradeOut,
)

SWAP_CHANGED_JOB = "hearth.trading.swap_changed"
MAX_HOLD = 10**15  # the ledger's per-leg ceiling
_GUARDS = ["daily_limit", "price_band_bps", "breaker_bps", "breaker_window_seconds", "halted", "halt_reason"]


def _pair_missing() -> NotFound:
    return NotFound("trading pair not found", code="pair_not_found")


def _client_key(prefix: str, actor_id: int, client_key: str | None) -> str:
    return ledger.client_key(prefix, actor_id, client_key)


def _require_admin(ctx: CommunityContext) -> None:
    ctx.require_role(Role.ADMIN)


def _tradable(session: Session, community_id: int, chip_id: int) -> Chip:
    """The chip, refused unless it trades."""
    chip = session.get(Chip, chip_id)
    if chip is None or chip.community_id != community_id:
        raise NotFound("chip not found", code="chip_not_found")
    if not chip.tradable or chip.expired:
        raise Conflict("this chip is not tradable", code="chip_not_tradable", extra={"chip_id": chip.id})
    if chip.frozen:
        raise Conflict("this chip is frozen", code="chip_frozen", extra={"chip_id": chip.id})
    return chip


def _load_pair(session: Session, actor: Actor, pair_id: int) -> tuple[TradingPair, CommunityContext]:
    pair = session.get(TradingPair, pair_id)
    if pair is None:
        raise _pair_missing()
    return pair, context_via(session, actor, pair.community_id, _pair_missing())


# --- pairs and guard rails --------------------------------------------------------------


def create_pair(session: Session, actor: Actor, community_id: int, data: PairIn) -> PairOut:
    ctx = community_context(session, actor, community_id)
    _require_admin(ctx)
    if data.base_chip_id == data.quote_chip_id:
        raise InvalidInput("a pair needs two different chips", code="same_chip")
    _tradable(session, community_id, data.base_chip_id)
    _tradable(session, community_id, data.quote_chip_id)
    if repo.pair_between(session, data.base_chip_id, data.quote_chip_id) is not None:
        raise Conflict("these chips already trade as a pair", code="pair_exists")
    pair = TradingPair(
        community_id=community_id,
        base_chip_id=data.base_chip_id,
        quote_chip_id=data.quote_chip_id,
        created_by=actor.id,
        breaker_window_seconds=3600,
        halted=False,
    )
    session.add(pair)
    session.flush()
    audit.record(
        session, actor, "trading.pair_created", pair, community_id=community_id, after=audit.snapshot(pair)
    )
    return PairOut.model_validate(pair)


def list_pairs(
    session: Session, actor: Actor, community_id: int, *, cursor: str | None, limit: int
) -> PageOut[PairOut]:
    community_context(session, actor, community_id)
    page = paginate(session, repo.pairs_of(community_id), TradingPair.id, cursor=cursor, limit=limit)
    return page.map(PairOut.model_validate).out()


def get_pair(session: Session, actor: Actor, pair_id: int) -> PairOut:
    pair, _ = _load_pair(session, actor, pair_id)
    return PairOut.model_validate(pair)


def set_guards(session: Session, actor: Actor, pair_id: int, data: GuardsIn) -> PairOut:
    _, ctx = _load_pair(session, actor, pair_id)
    _require_admin(ctx)
    pair = repo.lock_pair(session, pair_id)
    assert pair is not None
    changes = data.model_dump(exclude_unset=True)
    refuse_nulls(changes, ("breaker_window_seconds",))
    audit.apply_changes(
        session, actor, "trading.guards_updated", pair, changes, _GUARDS, community_id=pair.community_id
    )
    return PairOut.model_validate(pair)


def _halt(pair: TradingPair, reason: str, now: datetime) -> None:
    pair.halted = True
    pair.halt_reason = reason
    pair.halted_at = now


def halt_pair(session: Session, actor: Actor, pair_id: int) -> PairOut:
    _, ctx = _load_pair(session, actor, pair_id)
    _require_admin(ctx)
    pair = repo.lock_pair(session, pair_id)
    assert pair is not None
    if not pair.halted:
        _halt(pair, "manual", utcnow())
        session.flush()
        audit.record(
            session, actor, "trading.halted", pair, community_id=pair.community_id, after={"reason": "manual"}
        )
    return PairOut.model_validate(pair)


def resume_pair(session: Session, actor: Actor, pair_id: int) -> PairOut:
    """Trading restarts; the breaker's window starts again from the last price."""
    _, ctx = _load_pair(session, actor, pair_id)
    _require_admin(ctx)
    pair = repo.lock_pair(session, pair_id)
    assert pair is not None
    if pair.halted:
        before = {"reason": pair.halt_reason}
        pair.halted, pair.halt_reason, pair.halted_at = False, None, None
        pair.window_price, pair.window_started_at = pair.last_price, utcnow()
        session.flush()
        audit.record(session, actor, "trading.resumed", pair, community_id=pair.community_id, before=before)
    return PairOut.model_validate(pair)


def book(session: Session, actor: Actor, pair_id: int, *, levels: int = 20) -> BookOut:
    pair, _ = _load_pair(session, actor, pair_id)

    def side(s: Side) -> list[Level]:
        return [Level(price=p, amount=a, orders=n) for p, a, n in repo.depth(session, pair.id, s, levels)]

    return BookOut(
        pair_id=pair.id,
        bids=side(Side.BUY),
        asks=side(Side.SELL),
        last_price=pair.last_price,
        halted=pair.halted,
    )


def recent_trades(
    session: Session, actor: Actor, pair_id: int, *, cursor: str | None, limit: int
) -> PageOut[TradeOut]:
    pair, _ = _load_pair(session, actor, pair_id)
    page = paginate(session, repo.trades_of(pair.id), Trade.id, cursor=cursor, limit=limit)
    return page.map(TradeOut.model_validate).out()


# --- orders -------------------------------------------------------------------------------


def price_band(pair: TradingPair) -> tuple[int, int] | None:
    """The accepted price range: +-price_band_bps around the last trade price (none before a trade)."""
    if pair.price_band_bps is None or pair.last_price is None:
        return None
    low = -(-pair.last_price * max(0, 10_000 - pair.price_band_bps) // 10_000)  # ceil
    high = pair.last_price * (10_000 + pair.price_band_bps) // 10_000
    return max(low, 1), high


def day_start(now: datetime) -> datetime:
    return as_utc(datetime.combine(now.date(), time.min))


def _placed(session: Session, order: TradeOrder) -> PlacedOut:
    return PlacedOut(
        order=TradeOrderOut.model_validate(order),
        trades=[TradeOut.model_validate(t) for t in repo.trades_of_order(session, order.id)],
    )


def _replay(order: TradeOrder, pair_id: int, data: OrderIn) -> TradeOrder:
    if (order.pair_id, order.side, order.price, order.amount) != (
        pair_id,
        data.side,
        data.price,
        data.amount,
    ):
        raise key_reused()
    return order


def place_order(
    session: Session, actor: Actor, pair_id: int, data: OrderIn, client_key: str | None
) -> tuple[PlacedOut, bool]:
    """Place a limit order and match it at once. Returns (order with its fills, created)."""
    actor.require_personal()
    key = _client_key("order", actor.id, client_key)
    pair, ctx = _load_pair(session, actor, pair_id)
    ctx.require_member()
    # Requests with one key run one at a time (even on different pairs): a retry that
    # arrives while the first attempt is in flight waits for it and finds its order.
    ledger.lock_key(session, key)
    existing = repo.order_by_key(session, key)
    if existing is not None:
        return _placed(session, _replay(existing, pair_id, data)), False
    # Read before the pair lock, to hold the pair for less time: the pair lock does not
    # guard a chip's flags (an admin changes them without it), and the ledger checks a
    # frozen chip again when it places the hold and posts each fill.
    # (One read for both chips; `_tradable`'s `session.get` then finds them in the session.)
    repo.chips_of(session, (pair.base_chip_id, pair.quote_chip_id))
    locked = repo.lock_pair(session, pair_id)
    assert locked is not None
    pair = locked
    base = _tradable(session, pair.community_id, pair.base_chip_id)
    quote = _tradable(session, pair.community_id, pair.quote_chip_id)
    if pair.halted:
        raise Conflict(
            "trading on this pair is halted", code="pair_halted", extra={"reason": pair.halt_reason}
        )
    band = price_band(pair)
    if band is not None and not band[0] <= data.price <= band[1]:
        raise InvalidInput(
            f"the price must lie between {band[0]} and {band[1]}",
            code="price_out_of_band",
            extra={"min": band[0], "max": band[1], "reference": pair.last_price},
        )
    hold_amount = data.amount if data.side == Side.SELL else data.amount * data.price
    if hold_amount > MAX_HOLD:
        raise InvalidInput("this order is too large", code="invalid_amount")
    now = utcnow()
    if pair.daily_limit is not None:
        # Traded today plus what is still open counts, so open orders cannot outrun the limit.
        used = repo.traded_since(session, pair.id, actor.id, day_start(now)) + repo.open_remaining(
            session, pair.id, actor.id
        )
        if used + data.amount > pair.daily_limit:
            raise Conflict(
                f"at most {pair.daily_limit} units a day on this pair",
                code="daily_limit_exceeded",
                extra={"limit": pair.daily_limit, "used": used},
            )

    loaded: dict[int, TradeOrder] = {}
    # Whether a member's wallet in either chip is frozen: read with the book to plan, then
    # exactly once their accounts are locked (a freeze waits for our lock meanwhile).
    frozen: dict[int, bool] = {}
    # What each order's hold still keeps, where known: a hold that matching empties is
    # settled by the ledger (nothing left to release when its order ends).
    kept: dict[int, int] = {}

    def book_side() -> Iterator[matching.Resting]:
        chip_ids = (base.id, quote.id)
        for row, stopped, left in repo.resting(
            session, pair.id, data.side, data.price, chip_ids, first=data.amount
        ):
            loaded[row.id] = row
            if left is not None:
                kept[row.id] = left
            frozen.setdefault(row.user_id, stopped)
            halt = row.user_id != actor.id and frozen[row.user_id]
            yield matching.Resting(row.id, row.user_id, row.price, row.amount - row.filled, halt)

    chips = {base.id: base, quote.id: quote}
    wallets: dict[tuple[int, int], LedgerAccount] = {}  # (owner, chip) -> locked account
    held_by_us: set[int] = set()  # owners whose wallets this placement holds locked

    def lock_wallets(owners: set[int]) -> None:
        for account in repo.lock_wallets(session, owners, chips):
            assert account.owner_id is not None
            wallets[(account.owner_id, account.chip_id)] = account

    with session.begin_nested():
        while True:
            plan = matching.plan(data.side, actor.id, data.price, data.amount, book_side())
            # Every account this placement may touch, locked at once in id order (no deadlock
            # with other ledger writers): ours in both chips, each counterparty's in both
            # chips, and the wallets of frozen members whose crossing orders are cancelled.
            payees = {actor.id} | {loaded[fill.resting_id].user_id for fill in plan.fills}
            owners = payees | {loaded[r].user_id for r in plan.frozen_cancels}
            new = owners - held_by_us
            if new:
                lock_wallets(new)
                # A member trading a chip for the first time gets a wallet in it (we and
                # each counterparty, as both sides of a fill are paid).
                missing = {(o, c) for o in new & payees for c in chips if (o, c) not in wallets}
                for chip_id, chip in chips.items():
                    ledger.wallet_ids(session, chip, {o for o, c in missing if c == chip_id})
                if missing:
                    lock_wallets({o for o, _ in missing})
                held_by_us |= new
            exact = {
                owner: any(wallets[(owner, c)].frozen for c in chips if (owner, c) in wallets)
                for owner in held_by_us - {actor.id}
            }
            # A wallet frozen or thawed since the first read: plan again with what is true now.
            changed = any(frozen.get(owner, False) != f for owner, f in exact.items())
            frozen.update(exact)
            if not changed:
                break
        mine = {chip_id: wallets[(actor.id, chip_id)] for chip_id in (base.id, quote.id)}
        for account in mine.values():
            if account.frozen:
                raise ledger_errors.account_frozen(account.id)
        order = TradeOrder(
            pair_id=pair.id,
            community_id=pair.community_id,
            user_id=actor.id,
            side=data.side,
            price=data.price,
            amount=data.amount,
            filled=0,
            status=TradeOrderStatus.OPEN,
            idempotency_key=key,
        )
        session.add(order)
        session.flush()
        hold = ledger.place_hold(
            session,
            account_id=mine[base.id if data.side == Side.SELL else quote.id].id,
            amount=hold_amount,
            key=key,
            subject=("trade_order", order.id),
        )
        order.hold_id = hold.id
        kept[order.id] = hold.remaining
        for resting_id in plan.self_cancels:
            _close(session, loaded[resting_id], TradeOrderStatus.CANCELLED, "self_trade", kept)
        for resting_id in plan.frozen_cancels:
            _close(session, loaded[resting_id], TradeOrderStatus.CANCELLED, "account_frozen", kept)
        trades: list[Trade] = []
        for fill in plan.fills:
            if pair.halted:
                break
            resting = loaded[fill.resting_id]
            buy, sell = (order, resting) if data.side == Side.BUY else (resting, order)
            trades.append(
                _settle(session, pair, base, quote, buy, sell, fill, wallets, kept, taker=data.side, now=now)
            )
        if order.filled == order.amount:
            _close(session, order, TradeOrderStatus.FILLED, None, kept)
        elif pair.halted:
            # The breaker tripped while this order was matching: the market stops, its rest is cancelled.
            _close(session, order, TradeOrderStatus.CANCELLED, "halted", kept)
        # One flush writes the fills' trades, the orders' changes and the pair's prices.
        session.flush()
    # A new order has no trades but these (in id order, as trades_of_order reads them).
    placed = PlacedOut(
        order=TradeOrderOut.model_validate(order),
        trades=[TradeOut.model_validate(t) for t in sorted(trades, key=lambda t: t.id)],
    )
    return placed, True


def _settle(
    session: Session,
    pair: TradingPair,
    base: Chip,
    quote: Chip,
    buy: TradeOrder,
    sell: TradeOrder,
    fill: matching.Fill,
    wallets: dict[tuple[int, int], LedgerAccount],
    kept: dict[int, int],
    *,
    taker: Side,
    now: datetime,
) -> Trade:
    """One fill: ONE ledger transaction of four legs capturing both orders' holds.

    The trade row and the orders' new fill state are written by the caller's next flush.
    """
    assert buy.hold_id is not None and sell.hold_id is not None
    cost = fill.amount * fill.price

    def wallet(order: TradeOrder, chip: Chip) -> int:
        return wallets[(order.user_id, chip.id)].id

    posted = ledger.post(
        session,
        Entry(
            community_id=pair.community_id,
            kind=TxKind.TRADE,
            key=f"trade:{buy.id}:{sell.id}",
            legs=(
                Leg(wallet(sell, base), base.id, -fill.amount),
                Leg(wallet(buy, base), base.id, fill.amount),
                Leg(wallet(buy, quote), quote.id, -cost),
                Leg(wallet(sell, quote), quote.id, cost),
            ),
            memo=f"trade on pair #{pair.id}",
            subject_type="trading_pair",
            subject_id=pair.id,
            holds=(HoldUse(sell.hold_id, fill.amount), HoldUse(buy.hold_id, cost)),
        ),
    )
    for order_id, used in ((sell.id, fill.amount), (buy.id, cost)):
        if order_id in kept:
            kept[order_id] -= used
    trade = Trade(
        pair_id=pair.id,
        buy_order_id=buy.id,
        sell_order_id=sell.id,
        buyer_id=buy.user_id,
        seller_id=sell.user_id,
        taker_side=taker,
        price=fill.price,
        amount=fill.amount,
        transaction_id=posted.transaction_id,
        created_at=now,
    )
    session.add(trade)
    for order in (buy, sell):
        order.filled += fill.amount
        order.updated_at = now
    # The resting side completes here; the incoming one when matching ends.
    resting = sell if taker == Side.BUY else buy
    if resting.filled == resting.amount:
        _close(session, resting, TradeOrderStatus.FILLED, None, kept)
    _after_trade(pair, fill.price, now)
    return trade


def _after_trade(pair: TradingPair, price: int, now: datetime) -> None:
    """Move the reference price and trip the breaker on a move beyond breaker_bps in the window."""
    window = timedelta(seconds=pair.breaker_window_seconds)
    if pair.window_started_at is None or now - pair.window_started_at >= window or pair.window_price is None:
        pair.window_price = pair.last_price if pair.last_price is not None else price
        pair.window_started_at = now
    pair.last_price = price
    start = pair.window_price
    if pair.breaker_bps is not None and abs(price - start) * 10_000 > pair.breaker_bps * start:
        _halt(pair, "circuit_breaker", now)


def _close(
    session: Session,
    order: TradeOrder,
    status: TradeOrderStatus,
    reason: str | None,
    kept: dict[int, int] | None = None,
) -> None:
    """End an order: release what its hold still keeps (a buyer's price improvement, the unfilled rest).

    `kept` says what holds still keep where the caller knows it. A hold only ever shrinks,
    so a known 0 is exact: the ledger settled that hold when it was emptied, and voiding
    it would change nothing (three round trips saved per order that fills exactly).
    """
    assert order.hold_id is not None
    if kept is None or kept.get(order.id) != 0:
        ledger.void_hold(session, order.hold_id)
    order.status = status
    order.cancel_reason = reason
    order.updated_at = utcnow()


def cancel_order(session: Session, actor: Actor, order_id: int) -> TradeOrderOut:
    """The owner cancels an open order; its remaining hold is released. Idempotent."""
    order = session.get(TradeOrder, order_id)
    missing = NotFound("order not found", code="order_not_found")
    if order is None or order.user_id != actor.id:
        raise missing
    context_via(session, actor, order.community_id, missing)
    repo.lock_pair(session, order.pair_id)
    locked = repo.lock_order(session, order_id)
    assert locked is not None
    if locked.status == TradeOrderStatus.CANCELLED:
        return TradeOrderOut.model_validate(locked)
    if locked.status != TradeOrderStatus.OPEN:
        raise Conflict("this order is already filled", code="order_not_open")
    _close(session, locked, TradeOrderStatus.CANCELLED, "member")
    session.flush()
    return TradeOrderOut.model_validate(locked)


def my_orders(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    pair_id: int | None,
    status: TradeOrderStatus | None,
    cursor: str | None,
    limit: int,
) -> PageOut[TradeOrderOut]:
    community_context(session, actor, community_id).require_member()
    stmt = repo.orders_of(community_id, actor.id, pair_id=pair_id, status=status)
    return (
        paginate(session, stmt, TradeOrder.id, cursor=cursor, limit=limit)
        .map(TradeOrderOut.model_validate)
        .out()
    )


# --- swap offers ------------------------------------------------------------------------------


def _swap_missing() -> NotFound:
    return NotFound("swap offer not found", code="swap_not_found")


def create_swap(
    session: Session, actor: Actor, community_id: int, data: SwapIn, client_key: str | None
) -> tuple[SwapOut, bool]:
    """Offer `give_amount` of one chip for `want_amount` of another to one member; ours are held."""
    actor.require_personal()
    key = _client_key("swap", actor.id, client_key)
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    # A retry that arrives while the first attempt is in flight waits here, then finds its swap.
    ledger.lock_key(session, key)
    existing = repo.swap_by_key(session, key)
    if existing is not None:
        return _swap_replay(existing, data), False
    if data.taker_id == actor.id:
        raise InvalidInput("a swap needs another member", code="same_member")
    if data.give_chip_id == data.want_chip_id:
        raise InvalidInput("a swap needs two different chips", code="same_chip")
    taker = session.scalar(
        select(Membership).where(
            Membership.community_id == community_id,
            Membership.user_id == data.taker_id,
            Membership.status == MembershipStatus.ACTIVE,
        )
    )
    if taker is None:
        raise NotFound("no such member in this community", code="member_not_found")
    if social_repo.blocked_either_way(session, actor.id, data.taker_id):
        raise social_errors.blocked()  # no offers (and their notifications) between a blocked pair
    give = _tradable(session, community_id, data.give_chip_id)
    _tradable(session, community_id, data.want_chip_id)
    now = utcnow()
    with session.begin_nested():
        swap = SwapOffer(
            community_id=community_id,
            maker_id=actor.id,
            taker_id=data.taker_id,
            give_chip_id=data.give_chip_id,
            give_amount=data.give_amount,
            want_chip_id=data.want_chip_id,
            want_amount=data.want_amount,
            status=SwapStatus.OPEN,
            idempotency_key=key,
            note=data.note,
            expires_at=now + timedelta(seconds=data.expires_in_seconds) if data.expires_in_seconds else None,
        )
        session.add(swap)
        session.flush()
        account = ledger.open_account(session, give, actor.id)
        ledger.lock_accounts(session, [account.id])
        hold = ledger.place_hold(
            session,
            account_id=account.id,
            amount=data.give_amount,
            key=key,
            expires_at=swap.expires_at,
            subject=("swap_offer", swap.id),
        )
        swap.hold_id = hold.id
        session.flush()
    jobs.enqueue(session, SWAP_CHANGED_JOB, swap.id, "offered")
    return SwapOut.model_validate(swap), True


def _swap_replay(swap: SwapOffer, data: SwapIn) -> SwapOut:
    same = (
        swap.taker_id,
        swap.give_chip_id,
        swap.give_amount,
        swap.want_chip_id,
        swap.want_amount,
        swap.note,
    ) == (
        data.taker_id,
        data.give_chip_id,
        data.give_amount,
        data.want_chip_id,
        data.want_amount,
        data.note,
    )
    if not same:
        raise key_reused()
    return SwapOut.model_validate(swap)


def _load_swap(session: Session, actor: Actor, swap_id: int) -> SwapOffer:
    swap = session.get(SwapOffer, swap_id)
    if swap is None or actor.id not in (swap.maker_id, swap.taker_id):
        raise _swap_missing()
    context_via(session, actor, swap.community_id, _swap_missing())
    locked = repo.lock_swap(session, swap_id)
    assert locked is not None
    return locked


def get_swap(session: Session, actor: Actor, swap_id: int) -> SwapOut:
    swap = session.get(SwapOffer, swap_id)
    if swap is None or actor.id not in (swap.maker_id, swap.taker_id):
        raise _swap_missing()
    context_via(session, actor, swap.community_id, _swap_missing())
    return SwapOut.model_validate(swap)


def _swap_due(session: Session, swap: SwapOffer, now: datetime) -> bool:
    """An open swap whose time ran out (or whose hold the ledger already expired)."""
    if swap.status != SwapStatus.OPEN:
        return False
    if swap.expires_at is not None and swap.expires_at <= now:
        return True
    assert swap.hold_id is not None
    hold = session.get(LedgerHold, swap.hold_id, populate_existing=True)
    assert hold is not None
    return hold.status != HoldStatus.PENDING


def _swap_expired() -> Conflict:
    return Conflict("this swap offer has expired", code="swap_expired")


def accept_swap(session: Session, actor: Actor, swap_id: int) -> SwapOut:
    """The taker accepts: one SWAP transaction, 4 legs, capturing the maker's hold. Idempotent."""
    actor.require_personal()
    swap = _load_swap(session, actor, swap_id)
    if actor.id != swap.taker_id:
        raise PermissionDenied("only the member offered the swap can accept it", code="not_swap_taker")
    if swap.status == SwapStatus.ACCEPTED:
        return SwapOut.model_validate(swap)
    if swap.status == SwapStatus.EXPIRED or _swap_due(session, swap, utcnow()):
        raise _swap_expired()
    if swap.status != SwapStatus.OPEN:
        raise Conflict(f"this swap offer is {swap.status.value}", code="swap_not_open")
    assert swap.hold_id is not None
    hold = session.get(LedgerHold, swap.hold_id)
    assert hold is not None
    give = _tradable(session, swap.community_id, swap.give_chip_id)
    want = _tradable(session, swap.community_id, swap.want_chip_id)
    taker_receives = ledger.open_account(session, give, swap.taker_id)
    taker_pays = ledger.open_account(session, want, swap.taker_id)
    maker_receives = ledger.open_account(session, want, swap.maker_id)
    ledger.lock_accounts(session, [hold.account_id, taker_receives.id, taker_pays.id, maker_receives.id])
    posted = ledger.post(
        session,
        Entry(
            community_id=swap.community_id,
            kind=TxKind.SWAP,
            key=f"swap-accept:{swap.id}",
            legs=(
                Leg(hold.account_id, give.id, -swap.give_amount),
                Leg(taker_receives.id, give.id, swap.give_amount),
                Leg(taker_pays.id, want.id, -swap.want_amount),
                Leg(maker_receives.id, want.id, swap.want_amount),
            ),
            actor_id=actor.id,
            memo=f"swap #{swap.id}",
            subject_type="swap_offer",
            subject_id=swap.id,
            holds=(HoldUse(hold.id, swap.give_amount),),
        ),
    )
    swap.status = SwapStatus.ACCEPTED
    swap.transaction_id = posted.transaction_id
    swap.resolved_at = utcnow()
    session.flush()
    jobs.enqueue(session, SWAP_CHANGED_JOB, swap.id, "accepted")
    return SwapOut.model_validate(swap)


def _end_swap(session: Session, swap: SwapOffer, status: SwapStatus) -> None:
    """Release the maker's hold and close the offer. Call under the swap's row lock."""
    assert swap.hold_id is not None
    hold = session.get(LedgerHold, swap.hold_id)
    assert hold is not None
    ledger.lock_accounts(session, [hold.account_id])
    ledger.void_hold(
        session,
        swap.hold_id,
        status=HoldStatus.EXPIRED if status == SwapStatus.EXPIRED else HoldStatus.VOIDED,
    )
    swap.status = status
    swap.resolved_at = utcnow()
    session.flush()


def _withdraw(session: Session, swap: SwapOffer, status: SwapStatus) -> bool:
    """End an open swap as `status` (decline, cancel); True when this call ended it.

    An offer whose time ran out ends as expired whoever gets there first (this call or
    the sweep), and asking to decline or cancel it again returns it unchanged.
    """
    if swap.status in (status, SwapStatus.EXPIRED):
        return False
    if _swap_due(session, swap, utcnow()):
        _end_swap(session, swap, SwapStatus.EXPIRED)
        return False
    if swap.status != SwapStatus.OPEN:
        raise Conflict(f"this swap offer is {swap.status.value}", code="swap_not_open")
    _end_swap(session, swap, status)
    return True


def decline_swap(session: Session, actor: Actor, swap_id: int) -> SwapOut:
    """The taker says no: the maker's chips are released. Idempotent (an expired offer stays expired)."""
    swap = _load_swap(session, actor, swap_id)
    if actor.id != swap.taker_id:
        raise PermissionDenied("only the member offered the swap can decline it", code="not_swap_taker")
    if _withdraw(session, swap, SwapStatus.DECLINED):
        jobs.enqueue(session, SWAP_CHANGED_JOB, swap.id, "declined")
    return SwapOut.model_validate(swap)


def cancel_swap(session: Session, actor: Actor, swap_id: int) -> SwapOut:
    """The maker withdraws the offer: its chips are released. Idempotent (an expired offer stays expired)."""
    swap = _load_swap(session, actor, swap_id)
    if actor.id != swap.maker_id:
        raise PermissionDenied("only the member who made the offer can cancel it", code="not_swap_maker")
    _withdraw(session, swap, SwapStatus.CANCELLED)
    return SwapOut.model_validate(swap)


UnitOfWork = Callable[[], AbstractContextManager[Session]]


def _units(target: Session | UnitOfWork) -> UnitOfWork:
    """A factory of units of work (the beat task passes `session_scope`), or one session for all."""
    if isinstance(target, Session):
        return lambda: nullcontext(target)
    return target


def expire_swap(session: Session, swap_id: int, now: datetime | None = None) -> bool:
    """End one open swap offer past its expiry, releasing its hold. Locks like a cancel (swap, account)."""
    swap = repo.lock_swap(session, swap_id)
    if swap is None or not _swap_due(session, swap, now or utcnow()):
        return False
    _end_swap(session, swap, SwapStatus.EXPIRED)
    return True


def expire_swaps(units: Session | UnitOfWork, now: datetime | None = None, *, limit: int = 500) -> list[int]:
    """Expire open swap offers past their expiry; returns their ids. Idempotent.

    One short read lists the due offers; given a unit-of-work factory (the beat task
    passes `session_scope`), each is then expired in its own transaction, so the sweep
    never holds one maker's account while waiting for another offer's row.
    """
    now = now or utcnow()
    run = _units(units)
    with run() as session:
        due = repo.expired_swap_ids(session, now, limit)
    done = []
    for swap_id in due:
        with run() as session:
            if expire_swap(session, swap_id, now):
                done.append(swap_id)
    return done


def list_swaps(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    status: SwapStatus | None,
    cursor: str | None,
    limit: int,
) -> PageOut[SwapOut]:
    community_context(session, actor, community_id).require_member()
    stmt = repo.swaps_of(community_id, actor.id, status=status)
    return paginate(session, stmt, SwapOffer.id, cursor=cursor, limit=limit).map(SwapOut.model_validate).out()


def notify_swap(session: Session, swap_id: int, change: str) -> int:
    from core.notifications import service as notifications

    swap = session.get(SwapOffer, swap_id)
    if swap is None:
        return 0
    recipient, actor_id = (
        (swap.taker_id, swap.maker_id) if change == "offered" else (swap.maker_id, swap.taker_id)
    )
    give = session.get(Chip, swap.give_chip_id)
    want = session.get(Chip, swap.want_chip_id)
    assert give is not None and want is not None
    return int(
        notifications.chip_notice(
            session,
            user_id=recipient,
            community_id=swap.community_id,
            kind=f"swap_{change}",
            subject_type="swap_offer",
            subject_id=swap.id,
            actor_id=actor_id,
            data={
                "swap_id": swap.id,
                "give_amount": swap.give_amount,
                "give_symbol": give.symbol,
                "want_amount": swap.want_amount,
                "want_symbol": want.symbol,
            },
        )
    )
