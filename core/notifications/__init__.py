"""In-app notifications, written by jobs after the commit that caused them.

Invariant: one notification per (recipient, kind, subject), so a job that runs
twice (retry, redelivery after a crash) never notifies twice.
"""
