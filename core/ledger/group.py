"""Group commit: the single entries of one process's concurrent requests share one COMMIT.

A durable PostgreSQL commit costs a WAL flush and a round trip, and one commit per
transfer caps single transfers near what `pgbench -N` reaches on the machine. Here
request threads hand their validated entry to the process's `GroupCommitter` and
block; its writer thread (one by default) owns a dedicated connection, takes
everything queued (at most `MAX_BATCH`; while one batch commits the next one
accumulates, and when fewer entries are queued than callers are active, it waits up
to `GATHER` for theirs: see `_Writer._gather`), writes it with one call of
`hearth_post_many` (migration 0007: it locks every account of the batch at once in id
order, then applies each entry with `hearth_post`'s checks, in order), COMMITs, and
only then answers each caller. An acknowledged entry is
therefore exactly as durable as before, and each caller gets its own answer: a
refused entry (insufficient funds, frozen, key reused...) writes nothing and spoils
nothing for the others.

Failures:
- a database error on the batch (deadlock, a key raced by another process,
  serialization): roll back and retry the batch (`BATCH_RETRIES`), then post its
  entries one by one so that a poisoned entry fails alone; a caller whose entry the
  database refused gets SQLAlchemy's error for it, as the session path raises it (a
  lock timeout or a deadlock is then the API's 503 `retry_later`);
- a row lock held by another transaction: the writer waits at most `LOCK_TIMEOUT` for
  any lock (its connection's `lock_timeout`), so one long transaction on one account
  cannot stall every transfer of the process. A batch that times out is split: the
  writer locks, with SKIP LOCKED, those of its accounts that are free now and, in the
  same transaction, writes the entries that touch only those; each entry that touches
  an account still held is refused with the lock timeout (503 `retry_later`), as it
  would have been after that wait on its own. A lone entry is refused the same way.
  Locking in id order, a waiting batch holds its lower accounts meanwhile, as one big
  entry would: the timeout bounds that too;
- an unexpected error (a bug): the writer's transaction is rolled back (the connection
  dropped if that fails) before any caller is answered, so nothing a caller was told
  had failed is committed by the next batch;
- the connection lost before COMMIT: nothing was written; reconnect and post again;
- the connection lost during COMMIT (the outcome is unknown): reconnect and post the
  same entries again; their idempotency keys make that safe. An entry whose first
  attempt did commit comes back as a replay of the transaction id that attempt was
  given (ids come from a sequence and are never handed out twice), so its caller
  still sees it as the first write, not `replayed`. If that retry fails with a
  database error, whether the first COMMIT happened is unknown: the caller gets
  `ledger_unavailable` (503), and its retry with the same key finds the entry or
  writes it;
- the database unreachable for `RECONNECT_DELAYS`: the caller gets `ledger_unavailable`
  (503); the entry's fate is then decided by its key when the client retries;
- no answer within the caller's timeout: an entry still queued is cancelled (a writer
  skips it: it is never written) and its caller gets `ledger_unavailable`; an entry a
  writer has taken is answered within its batch's bounded time (lock timeouts, one
  split, reconnections), and its caller waits for that (`RUNNING_GRACE` at most).

Shutdown (`stop`, `stop_all`, and at interpreter exit) drains the queue: an accepted
entry is always written or answered with an error. Writers take their connections
from a pool of their own (a copy of the engine's), never one the application's
sessions use. After a fork the child starts its own committers (the parent's thread
does not exist there, and its connections must not be touched) and drops the
inherited pool of their engines (`dispose(close=False)`): pooled sockets are the
parent's. SQLite has no committer (one writer anyway), and neither has a
session joined to an outer transaction (a separate connection could not see that
transaction's rows): `post` then writes in the caller's session like `service.post`.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.ledger import errors as err
from core.ledger import service
from core.ledger.repository import _post_params, _status_to_result
from core.ledger.types import Entry, Posted

log = logging.getLogger("hearth.ledger.group")

MAX_BATCH = 256
# One writer: bigger batches cost less per entry than overlapping smaller ones. With 8 callers, 2
# writers (each expecting only the callers whose entries the other does not hold) split them into
# batches of ~4 and were within noise of one writer on the 2-core machine (0-8% either way in
# interleaved runs): the per-batch fixed cost (~0.6 ms of SQL, ~0.25 ms of COMMIT) eats the overlap.
WRITERS = 1
BATCH_RETRIES = 3
# Gathering, as PostgreSQL's commit_delay/commit_siblings: closed-loop callers otherwise settle
# into batches that alternate (half of them queue while the other half's batch commits), and
# each COMMIT has a fixed cost. A writer whose batch is smaller than the number of callers
# active now waits at most this long for the missing ones' entries; a lone caller never waits.
GATHER = 0.001
# A caller counts as active while it submits in a stream: its last entry came within this long
# of the one before and of now. (A request thread of a pool that is seldom reused does not, so
# under light load no batch waits for it.)
ACTIVE_WINDOW = 0.05
# Waits before each reconnection attempt of one write (about 6 s in all), then callers get a 503.
RECONNECT_DELAYS = (0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 2.0)
DEFAULT_TIMEOUT = 30.0
# How long a caller whose entry is already being written waits on past its own timeout: the
# batch's bounded time (lock waits, one split, reconnections), with room to spare.
RUNNING_GRACE = 60.0
# The longest one statement of the writer waits for a row lock (another transaction's) before
# the batch is split around the locked accounts (see the module docstring).
LOCK_TIMEOUT = 3.0
# Transient conflicts (deadlock, serialization) and a unique violation: a key another process
# committed meanwhile, which a retry sees as a replay or a conflict. A lock timeout (55P03) is
# not retried as it was: the batch is split instead.
_RETRY_SQLSTATES = frozenset({"40P01", "40001", "23505"})
_LOCK_NOT_AVAILABLE = "55P03"

# hearth_post_many's arrays, in order, with their types (see _render for their elements).
_COLUMNS = (
    ("communities", "bigint"),
    ("kinds", "text"),
    ("keys", "text"),
    ("request_hashes", "text"),
    ("actors", "bigint"),
    ("memos", "text"),
    ("subject_types", "text"),
    ("subject_ids", "bigint"),
    ("reverses", "bigint"),
    ("allow_frozen", "boolean"),
    ("leg_counts", "integer"),
    ("accounts", "bigint"),
    ("chips", "bigint"),
    ("amounts", "bigint"),
    ("hold_counts", "integer"),
    ("holds", "bigint"),
    ("hold_amounts", "bigint"),
)
_POST_MANY = (
    "SELECT entry, status, tx_id, detail FROM hearth_post_many("
    + ", ".join(f"%s::{pg_type}[]" for _, pg_type in _COLUMNS)
    + ")"
)

_STOP = object()


@dataclass(slots=True)
class _Pending:
    entry: Entry
    request_hash: str
    future: Future[Posted]
    # The entry's elements of hearth_post_many's arrays, rendered by the caller's thread.
    row: tuple[str, ...] = ()
    # The transaction id an attempt got for this entry before its COMMIT was cut off.
    lost_tx: int | None = None


class GroupCommitter:
    """The process's queue of entries and the writer threads that commit them in groups.

    Each writer has its own connection. With more than one, a batch can execute while the
    previous one waits for its COMMIT's WAL flush, which helps where the flush and not the
    CPU is the limit; every writer locks in id order, like every other transaction, so they
    cannot deadlock.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = MAX_BATCH,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect_delays: Sequence[float] = RECONNECT_DELAYS,
        writers: int = WRITERS,
        gather: float = GATHER,
        active_window: float = ACTIVE_WINDOW,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("group commit needs PostgreSQL (hearth_post_many)")
        self.engine = engine
        # The writers' connections come from a pool of their own, like the engine's: never a
        # connection the application's sessions use (nor, after a fork, the parent's sockets
        # pooled in the engine), and their session settings stay with them.
        self._pool = engine.pool.recreate()
        self.max_batch = max_batch
        self.timeout = timeout
        self.reconnect_delays = tuple(reconnect_delays)
        self.lock_timeout_ms = max(1, round(lock_timeout * 1000))
        self.commits = 0  # COMMITs that wrote at least one entry
        self.committed_entries = 0  # entries answered from those COMMITs (refusals included)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._stopped = False
        self.gather = gather
        self.active_window = active_window
        # Caller thread -> when it last submitted, and whether that followed its previous entry
        # within `active_window`.
        self._callers: dict[int, tuple[float, bool]] = {}
        # Entries the writers hold now (taken from the queue, not yet answered).
        self._held = 0
        self._writers = [_Writer(self, n) for n in range(writers)]
        for writer in self._writers:
            writer.thread.start()

    # --- callers' side ------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self._stopped

    def submit(self, entry: Entry, request_hash: str) -> Future[Posted]:
        """Queue a validated entry; the future resolves after the COMMIT that wrote it."""
        future: Future[Posted] = Future()
        pending = _Pending(entry, request_hash, future, _render(entry, request_hash))
        caller, now = threading.get_ident(), time.monotonic()
        last = self._callers.get(caller)
        self._callers[caller] = (now, last is not None and now - last[0] < self.active_window)
        with self._guard:
            if self._stopped:
                raise CommitterStopped()
            self._queue.put(pending)
        return future

    def post(self, entry: Entry, request_hash: str, timeout: float | None = None) -> Posted:
        """Write one validated entry and wait until it is committed (or refused)."""
        future = self.submit(entry, request_hash)
        try:
            return future.result(self.timeout if timeout is None else timeout)
        except FutureTimeout:
            if future.cancel():  # still queued: no writer will take it, so it is never written
                raise err.unavailable("the ledger could not take this write in time") from None
        # A writer has it: the batch answers within its bounded time (lock waits, a split, reconnections).
        try:
            return future.result(RUNNING_GRACE)
        except FutureTimeout:
            raise err.unavailable("the ledger did not confirm this write in time") from None

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new entries, write every accepted one, then close the connection."""
        with self._guard:
            if not self._stopped:
                self._stopped = True
                for _ in self._writers:  # behind every accepted entry: one for each writer
                    self._queue.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for writer in self._writers:
            writer.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._pool.dispose()

    def _active_callers(self) -> int:
        """How many caller threads submit in a stream now (`ACTIVE_WINDOW`); forget the idle ones."""
        horizon = time.monotonic() - self.active_window
        active = 0
        for caller, seen in list(self._callers.items()):  # callers insert meanwhile: iterate a copy
            if seen[0] >= horizon:
                active += seen[1]
            elif self._callers.get(caller) == seen:
                self._callers.pop(caller, None)
        return active

    def _committed(self, entries: int) -> None:
        with self._guard:
            self.commits += 1
            self.committed_entries += entries

    def stats(self) -> dict[str, float]:
        return {
            "commits": self.commits,
            "entries": self.committed_entries,
            "entries_per_commit": round(self.committed_entries / self.commits, 2) if self.commits else 0.0,
        }


class _Writer:
    """A writer thread and its connection (a pool-proxied DBAPI connection, held for its life)."""

    def __init__(self, committer: GroupCommitter, number: int) -> None:
        self.committer = committer
        self.engine = committer.engine
        self._connection: Any = None
        self.thread = threading.Thread(target=self._run, name=f"hearth-ledger-writer-{number}", daemon=True)

    def _run(self) -> None:
        work = self.committer._queue
        try:
            while True:
                item = work.get()
                if item is _STOP:
                    return
                batch: list[_Pending] = [item]
                stopping = False
                while len(batch) < self.committer.max_batch:
                    try:
                        item = work.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                with self.committer._guard:
                    self.committer._held += len(batch)
                try:
                    if not stopping and self.committer.gather > 0:
                        stopping = self._gather(batch)
                    self._write(batch)
                finally:
                    with self.committer._guard:
                        self.committer._held -= len(batch)
                if stopping:
                    return
        finally:
            self._disconnect()

    def _gather(self, batch: list[_Pending]) -> bool:
        """Wait, at most `gather`, until every caller active now has an entry in `batch`.

        Returns whether the stop sentinel was met (the batch is then written, and the writer ends).
        """
        committer = self.committer
        # Callers whose entries another writer holds cannot submit to this batch.
        expected = min(committer.max_batch, committer._active_callers() - (committer._held - len(batch)))
        if len(batch) >= expected:
            return False
        work = committer._queue
        deadline = time.monotonic() + committer.gather
        while len(batch) < expected:
            try:
                item = work.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return True
            batch.append(item)
            with committer._guard:
                committer._held += 1
        return False

    def _write(self, batch: list[_Pending]) -> None:
        # A caller that gave up while its entry was queued has been told so: skip the entry.
        batch = [pending for pending in batch if pending.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            self._commit(batch)
        except err.LedgerUnavailable as exc:
            for pending in batch:
                if not pending.future.done():  # those answered one by one keep their answer
                    pending.future.set_exception(err.LedgerUnavailable(exc.detail))
        except Exception as exc:  # a bug; still, nothing it wrote survives and no caller is left waiting
            log.exception("group commit failed for %d entries", len(batch))
            # Before anyone is answered: otherwise the next batch's COMMIT would write entries
            # whose callers were told they failed.
            self._rollback()
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(self._driver_error(exc))

    def _commit(self, items: list[_Pending], *, split: bool = False) -> None:
        """Write `items` in one transaction and answer their callers, retrying as the module docstring says.

        Raises `LedgerUnavailable` when the database cannot be reached; callers answered by then
        (one by one) keep their answer. `split`: these are what is left of a batch split around
        locked accounts (`_split`), not to be split again.
        """
        failures = 0
        reconnects = iter(self.committer.reconnect_delays)
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        while True:
            connection = self._connect(reconnects)
            rows = None
            try:
                rows = _execute(connection.dbapi_connection, items)
                connection.dbapi_connection.commit()
            except dbapi_error as exc:
                if self._lost(exc):
                    if rows is not None:
                        # Lost during COMMIT, which may have happened: remember what this attempt wrote.
                        for pending, (status, tx_id, _) in zip(items, rows, strict=True):
                            if status == "ok":
                                pending.lost_tx = tx_id
                    continue  # post again on a new connection (keys make it safe)
                # Refused by the database (a deadlock, a raced key, a bad value, a check at COMMIT,
                # a row lock held by another transaction past the lock timeout).
                self._rollback()
                if _sqlstate(exc) == _LOCK_NOT_AVAILABLE and len(items) > 1 and not split:
                    self._split(items, exc)
                    return
                failures += 1
                if _retryable(exc) and failures <= BATCH_RETRIES:
                    continue
                self._one_by_one(items, exc)
                return
            self.committer._committed(len(items))
            for pending, row in zip(items, rows, strict=True):
                _answer(pending, _outcome(pending, row))
            return

    def _one_by_one(self, items: list[_Pending], exc: Exception) -> None:
        if len(items) == 1:
            # Alone and still refused: its caller gets the database's error. (A key raced by
            # another transaction never ends here: the retry finds the key and answers
            # idempotency_key_reused.)
            self._refuse(items[0], exc)
            return
        log.warning(
            "group commit: a batch of %d failed (%s); posting its entries one by one", len(items), exc
        )
        for pending in items:
            self._commit([pending])

    def _split(self, items: list[_Pending], exc: Exception) -> None:
        """The batch waited past the lock timeout on a row another transaction holds.

        Locks what is free now (SKIP LOCKED never waits) and, in the same transaction, writes
        the entries whose accounts are all free; an entry that touches an account still
        locked is refused with the lock timeout (503 `retry_later`), as a transfer of its own
        would have been after that wait. Its retry is then its own.
        """
        connection = self._connect(iter(self.committer.reconnect_delays))
        accounts = sorted({leg.account_id for pending in items for leg in pending.entry.legs})
        try:
            locked = _lock_free_accounts(connection.dbapi_connection, accounts)
        except self.engine.dialect.loaded_dbapi.Error as probe_failed:
            log.warning("group commit: cannot tell which accounts are locked (%s)", probe_failed)
            if not self._lost(probe_failed):
                self._rollback()
            self._one_by_one(items, exc)
            return
        free = [p for p in items if locked.isdisjoint(leg.account_id for leg in p.entry.legs)]
        log.warning(
            "group commit: accounts %s locked past the lock timeout; %d of %d entries wait for them",
            sorted(locked),
            len(items) - len(free),
            len(items),
        )
        for pending in items:
            if not locked.isdisjoint(leg.account_id for leg in pending.entry.legs):
                self._refuse(pending, exc)
        if free:
            self._commit(free, split=True)  # their accounts are locked by this transaction already
        else:
            self._rollback()

    def _refuse(self, pending: _Pending, exc: Exception) -> None:
        """Answer an entry the database refused, with the error SQLAlchemy would raise for it."""
        if pending.lost_tx is not None:
            # An earlier attempt's COMMIT was cut off and may have happened; this one failed.
            _answer(pending, err.unavailable("the ledger could not tell whether this write was committed"))
        else:
            _answer(pending, self._driver_error(exc))

    def _driver_error(self, exc: Exception) -> Exception:
        """A driver error as SQLAlchemy raises it (a lock timeout: `OperationalError`, the API's 503)."""
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        if not isinstance(exc, dbapi_error):
            return exc
        wrapped = DBAPIError.instance(
            _POST_MANY, None, exc, dbapi_error, hide_parameters=True, dialect=self.engine.dialect
        )
        wrapped.__cause__ = exc
        return wrapped

    def _connect(self, delays: Iterable[float]) -> Any:
        """The writer's connection; a new one after a loss, waiting `delays` between attempts."""
        if self._connection is not None:
            return self._connection
        for delay in delays:
            time.sleep(delay)
            connection = None
            try:
                connection = self.committer._pool.connect()
                _bound_lock_waits(connection.dbapi_connection, self.committer.lock_timeout_ms)
                self._connection = connection
                return connection
            except Exception as exc:  # the next attempt, or the error below
                if connection is not None:
                    connection.invalidate(exc)
                log.warning("group commit: cannot reach the database (%s)", exc)
        raise err.unavailable("the ledger's database cannot be reached")

    def _lost(self, exc: Exception) -> bool:
        """Whether the connection is gone (then it is dropped, and the next attempt reconnects)."""
        connection = self._connection
        dbapi_connection = connection.dbapi_connection
        if not (self.engine.dialect.is_disconnect(exc, dbapi_connection, None) or dbapi_connection.closed):  # type: ignore[arg-type]
            return False
        connection.invalidate(exc)
        self._connection = None
        return True

    def _rollback(self) -> None:
        """End the writer's transaction, writing nothing; a connection that cannot is dropped."""
        connection = self._connection
        if connection is not None:
            try:
                connection.dbapi_connection.rollback()
            except Exception as exc:
                # Broken: the server rolls back when it goes, and the next attempt reconnects.
                log.warning("group commit: rollback failed, dropping the connection (%s)", exc)
                connection.invalidate(exc)
                self._connection = None

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # pragma: no cover - closing a dead connection at shutdown
                log.warning("group commit: closing the connection failed", exc_info=True)
            self._connection = None


class CommitterStopped(RuntimeError):
    """The committer was stopped: the caller posts in its own session instead."""


def _render(entry: Entry, request_hash: str) -> tuple[str, ...]:
    """The entry's elements of each array of `hearth_post_many`, as PostgreSQL array literal text.

    One literal per array is far cheaper than psycopg's element-wise dumping, and rendering
    here, in the caller's thread, keeps the writer thread (the serial part) short. Values are
    type-checked: nothing is silently converted.
    """
    p = _post_params(entry, request_hash)
    return (
        _int(p["community"]),
        _text(p["kind"]),
        _text(p["key"]),
        _text(p["request_hash"]),
        _int(p["actor"]),
        _text(p["memo"]),
        _text(p["subject_type"]),
        _int(p["subject_id"]),
        _int(p["reverses"]),
        "t" if p["allow_frozen"] else "f",
        str(len(p["accounts"])),
        ",".join(_int(v) for v in p["accounts"]),
        ",".join(_int(v) for v in p["chips"]),
        ",".join(_int(v) for v in p["amounts"]),
        str(len(p["holds"])),
        ",".join(_int(v) for v in p["holds"]),
        ",".join(_int(v) for v in p["hold_amounts"]),
    )


def _int(value: int | None) -> str:
    if value is None:
        return "NULL"
    if type(value) is not int:
        raise TypeError(f"ledger amounts and ids are integers, not {type(value).__name__}")
    return str(value)


def _text(value: str | None) -> str:
    # Every element quoted, so any string is safe.
    return "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _execute(dbapi_connection: Any, items: Sequence[_Pending]) -> list[tuple[str, int | None, int | None]]:
    arrays = ["{" + ",".join(filter(None, (p.row[i] for p in items))) + "}" for i in range(len(_COLUMNS))]
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(_POST_MANY, arrays, prepare=True)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    assert [row[0] for row in rows] == list(range(1, len(items) + 1)), "one answer per entry, in order"
    return [(row[1], row[2], row[3]) for row in rows]


def _bound_lock_waits(dbapi_connection: Any, lock_timeout_ms: int) -> None:
    """Set the writer's lock timeout for the connection's life (outside any transaction)."""
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
    finally:
        dbapi_connection.autocommit = False


# The batch's accounts another transaction holds now; the others are locked by this one.
_LOCK_FREE_ACCOUNTS = (
    "WITH free AS (SELECT id FROM ledger_accounts WHERE id = ANY(%(ids)s) FOR UPDATE SKIP LOCKED)"
    " SELECT id FROM ledger_accounts WHERE id = ANY(%(ids)s) AND id NOT IN (SELECT id FROM free)"
)


def _lock_free_accounts(dbapi_connection: Any, account_ids: list[int]) -> set[int]:
    """Lock those of `account_ids` no other transaction holds; return the ones it does."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(_LOCK_FREE_ACCOUNTS, {"ids": account_ids})
        return {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()


def _sqlstate(exc: Exception) -> str | None:
    return getattr(exc, "sqlstate", None)


def _retryable(exc: Exception) -> bool:
    return _sqlstate(exc) in _RETRY_SQLSTATES


def _answer(pending: _Pending, outcome: Posted | Exception) -> None:
    if isinstance(outcome, Posted):
        pending.future.set_result(outcome)
    else:
        pending.future.set_exception(outcome)


def _outcome(pending: _Pending, row: tuple[str, int | None, int | None]) -> Posted | Exception:
    status, tx_id, detail = row
    if status == "replay" and tx_id is not None and tx_id == pending.lost_tx:
        # Our own earlier attempt committed before its connection was cut: this is the first write.
        return Posted(tx_id, replayed=False)
    try:
        return _status_to_result(status, tx_id, detail)
    except Exception as exc:
        return exc


# --- the per-process registry ------------------------------------------------------------

_registry_lock = threading.Lock()
_committers: dict[Engine, GroupCommitter] = {}
# Committers inherited through fork(): their thread does not exist in the child, and closing
# their connection would close the parent's socket, so they are kept, untouched, forever.
_inherited: list[GroupCommitter] = []
_exiting = False


def committer(engine: Engine) -> GroupCommitter | None:
    """This process's committer for `engine`, started on first use; None where there is none."""
    if engine.dialect.name != "postgresql":
        return None
    with _registry_lock:
        found = _committers.get(engine)
        if found is None or found.stopped:
            if _exiting:
                return None
            found = _committers[engine] = GroupCommitter(engine)
        return found


def stop(engine: Engine, timeout: float | None = None) -> None:
    """Stop and drain the committer of `engine`, if this process has one."""
    with _registry_lock:
        found = _committers.pop(engine, None)
    if found is not None:
        found.stop(timeout)


def stop_all(timeout: float | None = 10.0) -> None:
    """Drain every committer of this process (at exit: no accepted entry is left unwritten)."""
    global _exiting
    with _registry_lock:
        _exiting = True
        found = list(_committers.values())
        _committers.clear()
    for one in found:
        one.stop(timeout)


def _after_fork_in_child() -> None:
    """A forked child starts its own committers (uvicorn, gunicorn and Celery workers fork)."""
    global _registry_lock
    # A thread of the parent may have held the lock at the fork; the child has only a copy.
    _registry_lock = threading.Lock()
    _inherited.extend(_committers.values())
    for engine in _committers:
        # The pool's connections are the parent's sockets: the child's writers open their own.
        engine.dispose(close=False)
    _committers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop_all)


# --- the service-level API ---------------------------------------------------------------


def post(session: Session, entry: Entry, *, timeout: float | None = None) -> Posted:
    """Write one entry as its own durable transaction; a retry with the same key returns the first result.

    The entry must be the last write of the unit of work. With a committer (PostgreSQL,
    a session bound to an engine) the session's transaction is committed first, so the
    committer's transaction sees what it wrote (a new account), and the entry is
    committed by the time this returns; the session can then read it. Otherwise the
    entry is written in the session, as `service.post` does, and the caller's commit
    makes it durable.
    """
    bind = session.get_bind()
    found = committer(bind) if isinstance(bind, Engine) else None
    if found is None:
        return service.post(session, entry)
    service.validate(entry)
    digest = service.request_hash(entry)
    if session.in_transaction():
        session.commit()
    try:
        return found.post(entry, digest, timeout)
    except CommitterStopped:
        return service.post(session, entry)


__all__ = ["CommitterStopped", "GroupCommitter", "committer", "post", "stop", "stop_all"]
