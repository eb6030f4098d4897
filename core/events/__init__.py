"""Community events: scheduling, RSVPs with a capacity and a waitlist, and check-in.

Invariants: `Event.going_count` always equals the number of `going` RSVPs and
never exceeds `capacity`. A seat is taken only by one conditional UPDATE
(`repository.claim_seat`), so concurrent RSVPs for the last seat cannot
over-book; seats are released or handed to the waitlist only while the event
row is locked, in waitlist order (earliest first). Times are stored in UTC;
the event's IANA time zone is kept for display and for reading naive input.
"""
