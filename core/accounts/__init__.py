"""Accounts: sign-up, login, bearer tokens, API keys and member profiles.

Invariants: passwords are stored only as argon2id hashes; tokens and API keys
only as SHA-256 digests, and their secrets are shown once, at creation.
"""
