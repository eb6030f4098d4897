"""Tipping (打賞): members tip members or posts with tippable chips.

Owns tips, the reputation they feed, the community's anti-farming policy and
reports of reciprocal tipping rings. Invariants: a tip is exactly one ledger
transaction (kind `tip`) keyed f"tip:{tipper}:{client key}", so a retry returns
the first tip and never pays twice; a refused tip writes nothing; reputation
totals only change together with the tip (or ring decision, or the reversal of the
tip's transaction) that explains them.
"""
