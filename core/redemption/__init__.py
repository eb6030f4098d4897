"""Redemption: issuers' offers priced in their chips, and the orders members place.

Invariants:
- an order's chips are held in the ledger while it is pending; fulfilment
  captures the hold in one REDEEM transaction (burned to the issuance account
  or paid to the issuer); cancellation and expiry void it. Nothing else moves
  redemption chips;
- stock never oversells: it is taken by one conditional UPDATE and returned
  only when a pending order is cancelled or expires;
- per-member limits count non-cancelled orders under the offer's row lock;
- lock order is offer row, then order row, then ledger accounts.
"""
