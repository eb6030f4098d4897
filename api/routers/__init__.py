"""One router per domain; each only maps HTTP onto `core` services."""
