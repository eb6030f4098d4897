"""Trading: a limit order book per chip pair, and direct swap offers between two members.

Invariants:
- prices are integers (quote units per one base unit), amounts integer base
  units; a sell order holds its base amount, a buy order amount * price of
  quote, in the ledger, for as long as it is open;
- everything that changes a pair's book (placing, matching, cancelling,
  halting) runs under a row lock on the pair, so matching is serialised per
  pair; inside it the ledger accounts a placement can touch are locked once,
  in id order, before any is changed;
- each fill is ONE ledger transaction (TRADE, 4 legs) capturing both holds,
  at the resting order's price; a buyer's unused quote is released when the
  order completes or is cancelled;
- a member's orders never trade with each other: the resting one is cancelled
  (self-trade prevention "cancel resting"), so the book never crosses; a
  crossing resting order whose owner's wallet (either chip) is frozen is
  cancelled the same way (reason "account_frozen"), so a frozen wallet never
  blocks its pair;
- lock order, everywhere: the idempotency key (`ledger.lock_key`: placing an
  order, making a swap offer), then the pair row, then order rows (only ever
  written under their pair's lock), then ledger accounts (all of them at once
  in id order, via `ledger.lock_accounts` or, placing an order, the one
  locking read `repository.lock_wallets`; or inside one ledger call). Swaps: key, then
  the swap row, then ledger accounts (create, accept, decline, cancel and
  expiry alike). A path may skip a step but never goes back to an earlier one;
- sweeps are one unit of work per item: `expire_swaps` lists the due offers in
  one short read, then expires each in its own transaction. An offer past its
  time ends as expired whoever touches it first (the sweep, a decline or a
  cancel); it can no longer be accepted;
- spending is personal: placing orders, making and accepting swap offers need a
  personal login (API keys get 403 `api_key_not_allowed`);
- guard rails per pair: per-member daily volume, a price band around the last
  trade price, and a circuit breaker (manual, or automatic on a large move);
- no cash-out: chips only move between wallets of one community.
"""
