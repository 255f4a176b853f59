"""Token auth: ``Authorization: Bearer <token>``; tokens are stored hashed, with scopes.

Scopes: ``read``, ``write`` (submit, cancel, resume jobs), ``agent`` (register targets, post
measurements), ``admin`` (everything). Missing or unknown token: 401; a token without the
scope: 403. Reads need no token when the server is bound to loopback.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request

__all__ = ["SCOPES", "require"]

SCOPES = ("read", "write", "agent", "admin")


def _token(request: Request) -> dict[str, Any] | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not secret.strip():
        raise HTTPException(401, "Authorization: expected 'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    record = request.app.state.store.verify_token(secret.strip())
    if record is None:
        raise HTTPException(401, "token: unknown or revoked; create one with `nas tokens create`",
                            headers={"WWW-Authenticate": "Bearer"})
    return record


def require(scope: str, *also: str):
    """A dependency that lets the request through only with a token holding ``scope`` (or one of
    ``also``: an agent may download what it profiles with its ``agent`` token)."""
    allowed = {scope, *also, "admin"}

    def check(request: Request) -> dict[str, Any] | None:
        record = _token(request)
        if record is None:
            if scope == "read" and not request.app.state.settings.auth_reads:
                return None
            raise HTTPException(401, f"token: missing; this request needs a token with the {scope!r} scope "
                                "(Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"})
        if not allowed & set(record["scopes"]):
            raise HTTPException(403, f"token {record['name']!r} lacks the {scope!r} scope (it has: "
                                f"{', '.join(record['scopes'])})")
        return record

    return Depends(check)
