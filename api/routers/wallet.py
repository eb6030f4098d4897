"""Wallets: balances, history, receipts, chain verification, and the community's daily digests."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentActor, Cursor, DbSession, Limit, PathId, QueryId
from core.chips.schemas import DigestIn
from core.models import TxKind
from core.schemas import MAX_ID, PageOut
from core.wallet import service as wallet
from core.wallet.schemas import (
    ChainVerifyOut,
    DigestOut,
    DigestVerifyOut,
    HistoryItemOut,
    ReceiptOut,
    WalletOut,
)

router = APIRouter(tags=["wallet"])

UserQuery = Annotated[
    int | None,
    Query(ge=1, le=MAX_ID, description="another member's wallet (moderators only); default: yours"),
]


@router.get("/communities/{community_id}/wallet", response_model=WalletOut)
def balances(
    community_id: PathId, actor: CurrentActor, session: DbSession, user_id: UserQuery = None
) -> WalletOut:
    return wallet.balances(session, actor, community_id, user_id)


@router.get("/communities/{community_id}/wallet/history", response_model=PageOut[HistoryItemOut])
def history(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    user_id: UserQuery = None,
    chip_id: QueryId | None = None,
    kind: TxKind | None = None,
    since: Annotated[datetime | None, Query(alias="from", description="at or after (naive = UTC)")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="before (naive = UTC)")] = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> PageOut[HistoryItemOut]:
    return wallet.history(
        session,
        actor,
        community_id,
        user_id=user_id,
        chip_id=chip_id,
        kind=kind,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


@router.get("/communities/{community_id}/wallet/verify", response_model=ChainVerifyOut)
def verify_chain(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    user_id: UserQuery = None,
    chip_id: QueryId | None = None,
) -> ChainVerifyOut:
    return wallet.verify_chain(session, actor, community_id, user_id=user_id, chip_id=chip_id)


@router.get("/ledger/transactions/{transaction_id}/receipt", response_model=ReceiptOut)
def receipt(transaction_id: PathId, actor: CurrentActor, session: DbSession) -> ReceiptOut:
    return wallet.receipt(session, actor, transaction_id)


@router.get("/communities/{community_id}/ledger/digests", response_model=PageOut[DigestOut])
def list_digests(
    community_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 30
) -> PageOut[DigestOut]:
    return wallet.list_digests(session, actor, community_id, cursor=cursor, limit=limit)


@router.post(
    "/communities/{community_id}/ledger/digests",
    response_model=DigestOut,
    status_code=status.HTTP_201_CREATED,
)
def seal_digest(community_id: PathId, data: DigestIn, actor: CurrentActor, session: DbSession) -> DigestOut:
    return wallet.seal_digest(session, actor, community_id, data.day)


@router.get("/communities/{community_id}/ledger/digests/{day}/verify", response_model=DigestVerifyOut)
def verify_digest(
    community_id: PathId, day: date, actor: CurrentActor, session: DbSession
) -> DigestVerifyOut:
    return wallet.verify_digest(session, actor, community_id, day)
