"""``Settings``: what the API process reads from its environment (and nothing else)."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Settings", "LOOPBACK"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Settings:
    """``NAS_DATABASE_URL``, ``NAS_API_HOST`` (127.0.0.1), ``NAS_API_PORT`` (8000),
    ``NAS_MAX_BODY_BYTES`` (1 MiB), ``NAS_API_THREADS`` (8: threads serving requests). Reads need a token too when the host is not loopback."""

    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1 << 20
    threads: int = 8

    @property
    def auth_reads(self) -> bool:
        return self.host not in LOOPBACK

    @classmethod
    def from_env(cls) -> Settings:
        def num(name: str, default: int) -> int:
            raw = os.environ.get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name}: got {raw!r}; valid: an integer") from None
            if value < 1:
                raise ValueError(f"{name}: got {value}; valid: an integer >= 1")
            return value

        return cls(database_url=os.environ.get("NAS_DATABASE_URL") or None,
                   host=os.environ.get("NAS_API_HOST", "127.0.0.1"), port=num("NAS_API_PORT", 8000),
                   max_body_bytes=num("NAS_MAX_BODY_BYTES", 1 << 20), threads=num("NAS_API_THREADS", 8))
