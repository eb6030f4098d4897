"""A member's wallet: balances across chip kinds, history, receipts and verification.

Read-only over the ledger. Members see only their own wallet; moderators may see any
member's wallet in their community. Receipts recompute each posting's hash
(`core.ledger.chain.posting_hash`) so a member can check the chain for themselves.
"""
