"""Communities, tiers, membership (roles and tiers), invites and bans.

Invariants: a community always has exactly one owner; a banned member cannot
rejoin while the ban stands; an invite is never used more than `max_uses`
times, even by concurrent joins (one conditional UPDATE claims a use).
"""
