"""Chips: issue, mint, burn, transfer, supply, and moderation (freeze, reverse).

Idempotency: every endpoint that moves chips requires an `Idempotency-Key` header
(1-120 chars of A-Z a-z 0-9 . _ : -). A retry with the same key and body returns the
first transaction (`replayed: true`, status 200); the same key with a different body,
or for a different operation, is a 409 `idempotency_key_reused`. Keys are per caller.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import CurrentActor, Cursor, DbSession, IdempotencyKey, Limit, PathId, QueryId, answer_created
from core.chips import service as chips
from core.chips.schemas import (
    AccountStateOut,
    BurnIn,
    ChipIn,
    ChipOut,
    ChipPatch,
    MintIn,
    ReasonIn,
    SupplyOut,
    TransactionOut,
    TransferBatchIn,
    TransferBatchOut,
    TransferIn,
    WalletFreezeIn,
)
from core.models import ChipKind
from core.schemas import PageOut

router = APIRouter(tags=["chips"])


def _created(response: Response, tx: TransactionOut) -> TransactionOut:
    answer_created(response, tx.replayed)
    return tx


@router.post("/communities/{community_id}/chips", response_model=ChipOut, status_code=status.HTTP_201_CREATED)
def issue_chip(community_id: PathId, data: ChipIn, actor: CurrentActor, session: DbSession) -> ChipOut:
    return chips.issue_chip(session, actor, community_id, data)


@router.get("/communities/{community_id}/chips", response_model=PageOut[ChipOut])
def list_chips(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 50,
    kind: ChipKind | None = None,
    issuer_id: QueryId | None = None,
) -> PageOut[ChipOut]:
    return chips.list_chips(
        session, actor, community_id, kind=kind, issuer_id=issuer_id, cursor=cursor, limit=limit
    )


@router.get("/chips/{chip_id}", response_model=ChipOut)
def get_chip(chip_id: PathId, actor: CurrentActor, session: DbSession) -> ChipOut:
    return chips.get_chip(session, actor, chip_id)


@router.patch("/chips/{chip_id}", response_model=ChipOut)
def update_chip(chip_id: PathId, patch: ChipPatch, actor: CurrentActor, session: DbSession) -> ChipOut:
    """Change the chip's name, description, flags, emission limit or lower its supply cap."""
    return chips.update_chip(session, actor, chip_id, patch)


@router.get("/chips/{chip_id}/supply", response_model=SupplyOut)
def supply(chip_id: PathId, actor: CurrentActor, session: DbSession) -> SupplyOut:
    return chips.supply(session, actor, chip_id)


@router.post("/chips/{chip_id}/mint", response_model=TransactionOut, status_code=status.HTTP_201_CREATED)
def mint(
    chip_id: PathId,
    data: MintIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransactionOut:
    return _created(response, chips.mint(session, actor, chip_id, data, idempotency_key))


@router.post("/chips/{chip_id}/burn", response_model=TransactionOut, status_code=status.HTTP_201_CREATED)
def burn(
    chip_id: PathId,
    data: BurnIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransactionOut:
    return _created(response, chips.burn(session, actor, chip_id, data, idempotency_key))


@router.post("/chips/{chip_id}/transfers", response_model=TransactionOut, status_code=status.HTTP_201_CREATED)
def transfer(
    chip_id: PathId,
    data: TransferIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransactionOut:
    return _created(response, chips.transfer(session, actor, chip_id, data, idempotency_key))


@router.post(
    "/chips/{chip_id}/transfers/batch", response_model=TransferBatchOut, status_code=status.HTTP_201_CREATED
)
def transfer_batch(
    chip_id: PathId,
    data: TransferBatchIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransferBatchOut:
    """Up to 1,000 transfers from the caller's wallet, all or none; each is its own transaction."""
    out = chips.transfer_batch(session, actor, chip_id, data, idempotency_key)
    answer_created(response, out.replayed)
    return out


# --- moderation ------------------------------------------------------------------------


@router.post("/chips/{chip_id}/freeze", response_model=ChipOut)
def freeze_chip(chip_id: PathId, data: ReasonIn, actor: CurrentActor, session: DbSession) -> ChipOut:
    return chips.set_chip_frozen(session, actor, chip_id, data, frozen=True)


@router.post("/chips/{chip_id}/unfreeze", response_model=ChipOut)
def unfreeze_chip(chip_id: PathId, data: ReasonIn, actor: CurrentActor, session: DbSession) -> ChipOut:
    return chips.set_chip_frozen(session, actor, chip_id, data, frozen=False)


@router.post(
    "/communities/{community_id}/members/{user_id}/wallet/freeze", response_model=list[AccountStateOut]
)
def freeze_wallet(
    community_id: PathId, user_id: PathId, data: WalletFreezeIn, actor: CurrentActor, session: DbSession
) -> list[AccountStateOut]:
    return chips.set_wallet_frozen(session, actor, community_id, user_id, data, frozen=True)


@router.post(
    "/communities/{community_id}/members/{user_id}/wallet/unfreeze", response_model=list[AccountStateOut]
)
def unfreeze_wallet(
    community_id: PathId, user_id: PathId, data: WalletFreezeIn, actor: CurrentActor, session: DbSession
) -> list[AccountStateOut]:
    return chips.set_wallet_frozen(session, actor, community_id, user_id, data, frozen=False)


@router.post(
    "/ledger/transactions/{transaction_id}/reverse",
    response_model=TransactionOut,
    status_code=status.HTTP_201_CREATED,
)
def reverse(
    transaction_id: PathId,
    data: ReasonIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransactionOut:
    return _created(response, chips.reverse(session, actor, transaction_id, data, idempotency_key))
