"""Courses: ordered lessons, enrolment and per-lesson progress.

Invariants: lesson positions within a course are exactly 1..n (unique, no
gaps); lessons are added and reordered only under the course row lock.
Unpublished courses exist only for staff (moderator and up). Enrolment needs
the course's tier; a member's progress is their completed lessons over all
lessons, and `Enrollment.completed_at` is set once, when the last lesson is
done (under the enrolment row lock, so concurrent completions cannot miss it).
"""
