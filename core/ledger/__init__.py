"""The chip ledger: the only code that moves chips.

Invariants (held by the database as well as by this package):
- append-only double entry in integer units: a transaction has >= 2 legs
  summing to zero per chip kind; nothing is updated or deleted, corrections
  are reversing transactions;
- member accounts never go below zero, nor below what they hold for pending
  holds (a CHECK on the account row);
- every write carries an idempotency key: a retry returns the first result,
  the same key with a different request is refused;
- each account's postings form a hash chain, and a daily digest per
  community pins every chain head.

Writes lock every account they touch once, in id order, before changing any.
On PostgreSQL a single transaction is one round trip (the `hearth_post` SQL
function, migration 0002); batches and SQLite take the Python path in
`repository`, which computes the same rows and hashes.
"""
