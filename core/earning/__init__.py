"""Earning: a per-community rules engine that grants chips for taking part.

Owns earn rules, grants, challenges and challenge completions. Hooks in other
domains (a post created, an event check-in, a course completed, a challenge
approved, onboarding finished) enqueue `hearth.earning.grant` with the trigger
and the subject's id; the job mints from the chip's issuance account.
Invariants: the same act never pays twice (one grant row and one ledger key
per rule, subject and member); daily caps are read under the member's account
lock; removal by moderation claws a grant back once, never overdrawing the
member (what was already spent is recorded as a shortfall).
"""
