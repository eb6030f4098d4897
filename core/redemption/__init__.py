"""Redemption: issuers' offers priced in their chips, and the orders members place.

Invariants:
- an order's chips are held in the ledger while it is pending; fulfilment
  captures the hold in one REDEEM transaction (burned to the issuance account
  or paid to the issuer); cancellation and expiry void it. Nothing else moves
  redemption chips;
- stock never oversells: it is taken by one conditional UPDATE and returned
  only when a pending order is cancelled or expires;
- per-member limits count non-cancelled orders under the offer's row lock;
- lock order, everywhere: the idempotency key (`ledger.lock_key`, redeem only),
  then the offer row, then the order row, then ledger accounts (all of them at
  once, via `ledger.lock_accounts` or inside one ledger call). A path may skip
  a step (fulfilment takes no offer lock) but never goes back to an earlier one;
- the expiry sweep is one unit of work (one commit) per order: it lists the due
  ids in one short read, then expires each in its own transaction, locking like
  a cancellation. It never holds one member's account while waiting for
  another offer;
- spending is personal: redeeming needs a personal login (API keys get 403
  `api_key_not_allowed`).
"""
