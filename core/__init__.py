"""Hearth's domain and persistence layer.

`core` owns configuration, the database (models, migrations, sessions), the
domain services (accounts, communities, conversation, events, courses, audit)
and the job plumbing. It imports none of the other Hearth packages.

Invariants:
- services `flush()`, never `commit()`: the request or the task owns the
  transaction;
- side effects (Celery sends) are buffered on the session and only leave after
  a successful commit (`core.jobs`);
- every domain condition is a `core.errors.DomainError` with a stable code.
"""
