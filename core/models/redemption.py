"""Redemption: issuers' offers priced in their chips, and members' orders for them.

An order's chips sit in a ledger hold while it is pending; fulfilment captures
the hold (burned to the issuance account or paid to the issuer), cancellation
or expiry voids it. `stock` is what is left to sell (NULL: unlimited) and only
moves through conditional UPDATEs, so the last item cannot be sold twice.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum


class OfferKind(enum.StrEnum):
    GOODS = "goods"
    SERVICE = "service"
    CALL = "call"  # access: a 1:1 call
    VIP_TRIAL = "vip_trial"  # access: a trial of a tier
    COURSE_SEAT = "course_seat"  # access: a seat in a course


class Settlement(enum.StrEnum):
    BURN = "burn"  # chips return to the chip's issuance account (supply shrinks)
    ISSUER = "issuer"  # chips move to the issuer's wallet


class RedemptionOffer(IdMixin, CreatedMixin, Base):
    __tablename__ = "redemption_offers"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_nonnegative"),
        CheckConstraint("per_member_limit IS NULL OR per_member_limit > 0", name="limit_positive"),
        CheckConstraint("hold_seconds IS NULL OR hold_seconds > 0", name="hold_positive"),
        CheckConstraint("trial_days IS NULL OR trial_days > 0", name="trial_days_positive"),
        Index("ix_redemption_offers_community_chip", "community_id", "chip_id"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[OfferKind] = mapped_column(str_enum(OfferKind, "offer_kind"))
    # What an access offer unlocks: a tier key (vip_trial) or a course id (course_seat);
    # fulfilling the order grants it (`core.redemption.access`). Free text for other kinds.
    access_ref: Mapped[str | None] = mapped_column(String(100))
    # How long a vip_trial lasts (required for that kind, NULL for every other).
    trial_days: Mapped[int | None] = mapped_column(Integer)
    # Access offers only: redeeming fulfils the order at once (no step for the issuer).
    instant: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    price: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int | None] = mapped_column(Integer)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    settlement: Mapped[Settlement] = mapped_column(str_enum(Settlement, "offer_settlement"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A pending order's hold expires after this long (the order is then cancelled).
    hold_seconds: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class RedemptionOrder(IdMixin, CreatedMixin, Base):
    __tablename__ = "redemption_orders"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("total > 0", name="total_positive"),
        Index("ix_redemption_orders_offer_member", "offer_id", "member_id"),
        Index("ix_redemption_orders_member", "member_id", "id"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    offer_id: Mapped[int] = mapped_column(BigId, ForeignKey("redemption_offers.id"))
    member_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    # Price and settlement as they were when redeemed: later edits of the offer do not apply.
    unit_price: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    settlement: Mapped[Settlement] = mapped_column(str_enum(Settlement, "order_settlement"))
    # An access order's terms as paid (the offer's `access_ref` and `trial_days` when it was
    # redeemed): fulfilment grants these, whatever the issuer edits on the offer meanwhile.
    access_ref: Mapped[str | None] = mapped_column(String(100))
    trial_days: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, "redemption_status"), default=OrderStatus.PENDING
    )
    hold_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_holds.id"))
    transaction_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_transactions.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    note: Mapped[str] = mapped_column(String(500), default="")
    resolved_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
