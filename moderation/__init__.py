"""Moderation: rules, classifiers, cases, the review queue, sanctions, appeals.

AI never acts irreversibly alone: verdicts are records a human confirms or undoes.

(Empty until the moderation issue lands; see docs/ROADMAP.md.)
"""
