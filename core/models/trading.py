"""Trading: a limit order book per chip pair, its fills, and direct swap offers.

Prices are integers: quote units per one base unit; amounts are base units.
An open order's funds sit in a ledger hold (a sell holds base, a buy holds
amount * price of quote). Everything that changes a pair's book runs under a
row lock on its `trading_pairs` row, so matching is serialised per pair.
No cash-out: chips only ever move between wallets of the same community.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum


class TradingPair(IdMixin, CreatedMixin, Base):
    __tablename__ = "trading_pairs"
    __table_args__ = (
        UniqueConstraint("base_chip_id", "quote_chip_id"),
        CheckConstraint("base_chip_id <> quote_chip_id", name="distinct_chips"),
        CheckConstraint("daily_limit IS NULL OR daily_limit > 0", name="daily_limit_positive"),
        CheckConstraint("price_band_bps IS NULL OR price_band_bps > 0", name="band_positive"),
        CheckConstraint("breaker_bps IS NULL OR breaker_bps > 0", name="breaker_positive"),
        CheckConstraint("breaker_window_seconds > 0", name="window_positive"),
    )

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    base_chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    quote_chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    # Guard rails (community admins): base units a member may trade per UTC day on this pair,
    # the band around the last trade price, and the move that trips the circuit breaker.
    daily_limit: Mapped[int | None] = mapped_column(BigInteger)
    price_band_bps: Mapped[int | None] = mapped_column(Integer)
    breaker_bps: Mapped[int | None] = mapped_column(Integer)
    breaker_window_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    halted: Mapped[bool] = mapped_column(Boolean, default=False)
    halt_reason: Mapped[str | None] = mapped_column(String(32))
    halted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_price: Mapped[int | None] = mapped_column(BigInteger)
    window_price: Mapped[int | None] = mapped_column(BigInteger)
    window_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class TradeOrderStatus(enum.StrEnum):
    OPEN = "open"
    FILLED = "filled"
    CANCELLED = "cancelled"


class TradeOrder(IdMixin, CreatedMixin, Base):
    __tablename__ = "trade_orders"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("filled >= 0 AND filled <= amount", name="filled_range"),
        CheckConstraint("status <> 'filled' OR filled = amount", name="filled_complete"),
        # The book: open orders of one side by price, then time (id).
        Index("ix_trade_orders_book", "pair_id", "side", "status", "price", "id"),
        Index("ix_trade_orders_user", "user_id", "id"),
        # A member's open orders on a pair (the daily limit counts what is still open).
        Index(
            "ix_trade_orders_open_user",
            "pair_id",
            "user_id",
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    pair_id: Mapped[int] = mapped_column(BigId, ForeignKey("trading_pairs.id", ondelete="CASCADE"))
    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    side: Mapped[Side] = mapped_column(str_enum(Side, "order_side"))
    price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    filled: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[TradeOrderStatus] = mapped_column(
        str_enum(TradeOrderStatus, "trade_order_status"), default=TradeOrderStatus.OPEN
    )
    # Why a cancelled order stopped: "member", "self_trade", "halted".
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    hold_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_holds.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Trade(IdMixin, Base):
    """One fill: `amount` base units at `price` (the resting order's), settled by `transaction_id`."""

    __tablename__ = "trades"
    __table_args__ = (
        UniqueConstraint("buy_order_id", "sell_order_id"),
        Index("ix_trades_pair", "pair_id", "id"),
        Index("ix_trades_buyer_time", "buyer_id", "pair_id", "created_at"),
        Index("ix_trades_seller_time", "seller_id", "pair_id", "created_at"),
        Index("ix_trades_sell_order", "sell_order_id"),  # the buy side has the unique pair
    )

    pair_id: Mapped[int] = mapped_column(BigId, ForeignKey("trading_pairs.id", ondelete="CASCADE"))
    buy_order_id: Mapped[int] = mapped_column(BigId, ForeignKey("trade_orders.id"))
    sell_order_id: Mapped[int] = mapped_column(BigId, ForeignKey("trade_orders.id"))
    buyer_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    seller_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    taker_side: Mapped[Side] = mapped_column(str_enum(Side, "taker_side"))
    price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    transaction_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SwapStatus(enum.StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class SwapOffer(IdMixin, CreatedMixin, Base):
    """`maker` offers `give_amount` of `give_chip` for `want_amount` of `want_chip` to `taker`."""

    __tablename__ = "swap_offers"
    __table_args__ = (
        CheckConstraint("give_amount > 0 AND want_amount > 0", name="amounts_positive"),
        CheckConstraint("maker_id <> taker_id", name="two_members"),
        CheckConstraint("give_chip_id <> want_chip_id", name="two_chips"),
        Index("ix_swap_offers_maker", "maker_id", "id"),
        Index("ix_swap_offers_taker", "taker_id", "id"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    maker_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    taker_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    give_chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    give_amount: Mapped[int] = mapped_column(BigInteger)
    want_chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    want_amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[SwapStatus] = mapped_column(str_enum(SwapStatus, "swap_status"), default=SwapStatus.OPEN)
    hold_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_holds.id"))
    transaction_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_transactions.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    note: Mapped[str] = mapped_column(String(280), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
