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
  (self-trade prevention "cancel resting"), so the book never crosses;
- guard rails per pair: per-member daily volume, a price band around the last
  trade price, and a circuit breaker (manual, or automatic on a large move);
- no cash-out: chips only move between wallets of one community.
"""
