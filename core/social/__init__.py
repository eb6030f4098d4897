"""Follows, blocks and the recommendation opt-out.

Invariants: nobody follows themselves or someone they blocked or who blocked them (a
block removes follows both ways, in every community); a follow joins two active
members of one community; opting out of recommendations deletes every embedding kept
for the member at once, in the same transaction, so nothing about them stays profiled.
"""
