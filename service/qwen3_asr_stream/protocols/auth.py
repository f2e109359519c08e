"""The bearer token every protocol checks (gRPC metadata, HTTP headers, WebSocket subprotocols)."""

from __future__ import annotations

import hmac

UNAUTHENTICATED_MESSAGE = "missing or wrong bearer token: send 'authorization: Bearer <token>'"


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>`` (constant-time compare)."""
    if not isinstance(authorization, str):
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and token_matches(given.strip(), token)


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of a token a client sent with the server's."""
    return hmac.compare_digest(given.encode(), token.encode())
