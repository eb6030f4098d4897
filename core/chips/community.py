"""The community chip: every community has exactly one, made with it or on first need.

Communities created before the chip economy had none; migration 0009 backfills them, and
`ensure_community_chip` makes one wherever a community is found without it. The database
allows one community chip per community (a unique partial index), so two requests creating
it at once yield one chip: the loser's insert fails inside a savepoint and it reads the
winner's.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.chips import repository as repo
from core.models import AccountKind, Chip, ChipKind, Community, EmissionPeriod, LedgerAccount

SYMBOL_LENGTH = 12
_ATTEMPTS = 3  # a member may take the chosen symbol between our read and our insert


def community_symbol(community: Community, taken: Collection[str] = ()) -> str:
    """The slug in capitals (letters and digits), numbered when a chip of the community has it."""
    base = re.sub(r"[^A-Z0-9]", "", community.slug.upper())[:SYMBOL_LENGTH] or "POINTS"
    symbol, n = base, 1
    while symbol in taken:
        n += 1
        symbol = f"{base[: SYMBOL_LENGTH - len(str(n))]}{n}"
    return symbol


def ensure_community_chip(session: Session, community: Community) -> Chip:
    """The community's own chip (owners and admins mint it), made now if it has none. Idempotent."""
    for _ in range(_ATTEMPTS):
        existing = repo.community_chip(session, community.id)
        if existing is not None:
            return existing
        chip = Chip(
            community_id=community.id,
            kind=ChipKind.COMMUNITY,
            issuer_id=None,
            name=community.name[:60],
            symbol=community_symbol(community, repo.symbols_of(session, community.id)),
            description="",
            emission_period=EmissionPeriod.DAY,
            decay_bps=0,
        )
        try:
            with session.begin_nested():
                session.add(chip)
                session.flush()
                session.add(
                    LedgerAccount(community_id=community.id, chip_id=chip.id, kind=AccountKind.ISSUANCE)
                )
                session.flush()
        except IntegrityError:
            continue  # a concurrent request made it (or took the symbol): read again
        return chip
    raise RuntimeError(f"could not make the community chip of community {community.id}")
