"""Retries after failures: whatever happened to the first attempt, chips move exactly once.

On PostgreSQL the connection really drops at commit: a small TCP proxy between
the client and the server forwards the COMMIT and then cuts the connection,
either before the server's reply (the commit happened, the client cannot know)
or before the COMMIT reaches the server (it never happened).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.db import make_engine, session_scope
from core.ledger import service as ledger
from core.models import LedgerAccount, TxKind
from tests.conftest import DATABASE_URL, needs_postgres
from tests.factories import add_member, make_chip, make_community, make_user


@dataclass
class Wallets:
    community_id: int
    chip_id: int
    payer: int
    payee: int


def _setup(engine: Engine) -> Wallets:
    with session_scope(engine) as session:
        owner = make_user(session)
        community = make_community(session, owner)
        payee = add_member(session, community)
        chip = make_chip(session, community)
        a = ledger.open_account(session, chip, owner.id)
        b = ledger.open_account(session, chip, payee.id)
        ledger.transfer(
            session,
            community_id=community.id,
            chip_id=chip.id,
            source=ledger.issuance_account(session, chip.id).id,
            target=a.id,
            amount=100,
            key=f"retry-fund-{uuid.uuid4()}",
            kind=TxKind.MINT,
        )
        return Wallets(community.id, chip.id, a.id, b.id)


def _pay(session: Session, w: Wallets, key: str) -> ledger.Posted:
    return ledger.transfer(
        session,
        community_id=w.community_id,
        chip_id=w.chip_id,
        source=w.payer,
        target=w.payee,
        amount=7,
        key=key,
    )


def _balances(engine: Engine, w: Wallets) -> tuple[int, int]:
    with session_scope(engine) as session:
        a, b = session.get(LedgerAccount, w.payer), session.get(LedgerAccount, w.payee)
        assert a is not None and b is not None
        return a.balance, b.balance


def test_retry_after_a_committed_attempt_whose_answer_was_lost(committed_engine: Engine) -> None:
    w = _setup(committed_engine)
    key = f"lost-answer-{uuid.uuid4()}"
    with session_scope(committed_engine) as session:
        first = _pay(session, w, key)
    # The client never saw `first`; it retries in a fresh unit of work.
    with session_scope(committed_engine) as session:
        again = _pay(session, w, key)
    assert again.replayed and again.transaction_id == first.transaction_id
    assert _balances(committed_engine, w) == (93, 7)


def test_retry_after_an_attempt_that_died_before_commit(committed_engine: Engine) -> None:
    w = _setup(committed_engine)
    key = f"died-{uuid.uuid4()}"
    with pytest.raises(ConnectionError), session_scope(committed_engine) as session:
        _pay(session, w, key)
        raise ConnectionError("the process died before COMMIT")
    with session_scope(committed_engine) as session:
        again = _pay(session, w, key)
    assert not again.replayed
    assert _balances(committed_engine, w) == (93, 7)


class _CommitCutter:
    """A loopback TCP proxy to PostgreSQL that cuts the connection at the first COMMIT."""

    def __init__(self, *, forward_commit: bool) -> None:
        self.forward_commit = forward_commit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.mute = threading.Event()  # set: the server's replies are dropped
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", 5432))
        threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()
        self._pipe(client, server, True)

    def _pipe(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        try:
            while not self.cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if watch and b"COMMIT" in data:
                    self.mute.set()
                    if self.forward_commit:
                        dst.sendall(data)
                        # Let the server finish the commit; its reply is dropped with the connection.
                        self.cut.wait(0.5)
                    self.cut.set()
                    break
                if not watch and self.mute.is_set():
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self.cut.set()
        self.listener.close()


@pytest.fixture
def proxied() -> Iterator[tuple[Engine, _CommitCutter]]:
    cutters: list[_CommitCutter] = []
    engines: list[Engine] = []

    def make(forward_commit: bool) -> tuple[Engine, _CommitCutter]:
        cutter = _CommitCutter(forward_commit=forward_commit)
        url = DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{cutter.port}")
        engine = make_engine(url, poolclass=__import__("sqlalchemy").pool.NullPool, pool_pre_ping=False)
        cutters.append(cutter)
        engines.append(engine)
        return engine, cutter

    yield make  # type: ignore[misc]
    for engine in engines:
        engine.dispose()
    for cutter in cutters:
        cutter.close()


@needs_postgres()
@pytest.mark.parametrize("committed", [True, False], ids=["commit-reached-server", "commit-lost"])
def test_retry_after_the_connection_drops_at_commit(
    committed_engine: Engine, proxied, committed: bool
) -> None:  # type: ignore[no-untyped-def]
    w = _setup(committed_engine)
    key = f"cut-{uuid.uuid4()}"
    engine, _cutter = proxied(committed)
    with pytest.raises(DBAPIError), session_scope(engine) as session:
        _pay(session, w, key)
    # The client cannot tell whether the first attempt committed; it retries with the same key.
    with session_scope(committed_engine) as session:
        again = _pay(session, w, key)
    assert again.replayed is committed
    assert _balances(committed_engine, w) == (93, 7)
    with session_scope(committed_engine) as session:
        assert ledger.check_invariants(session, w.community_id).ok
