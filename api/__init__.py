"""HTTP only: the FastAPI app factory, routers, dependencies and error rendering.

Nothing imports `api`. Routers translate HTTP to service calls and back; every
rule lives in the services below. The write session commits before the
response leaves, so a client never sees 2xx for a change that did not stick.
"""
