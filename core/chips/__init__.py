"""Chip kinds and their mint policy: issuing, minting, burning, transfers, freezing, supply.

Invariants:
- every chip has one issuance account; minting is a MINT transfer out of it and burning
  a BURN transfer back, so a chip's circulating supply is minus that account's balance
  and is provable from the ledger alone;
- a community has exactly one community chip (no issuer, minted by owners and admins),
  created with the community; a member issues at most one personal chip per community,
  and only its issuer mints it;
- a mint never takes the circulating supply above `supply_cap`, nor what was minted in
  the current emission period (summed from MINT transactions, not a counter) above
  `emission_limit`; mints of one chip are serialised by a lock on the chip row;
- every write that moves chips carries the client's `Idempotency-Key`; the ledger key is
  `chips:<actor id>:<client key>`, so a retry returns the first transaction and the same
  key on a different request is a 409 `idempotency_key_reused`;
- season end and demurrage return chips to the issuance account through idempotent
  EXPIRY and DECAY transactions (see `tasks.py`); nothing here edits a balance.
"""
