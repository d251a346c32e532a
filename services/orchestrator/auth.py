"""Bearer-token authentication with two roles, ``viewer`` and ``operator``.

Only SHA-256 hashes of tokens are configured (settings or a mounted Secret file), so neither the
environment nor ``GET /api/v1/config`` ever shows a usable token. Tokens are random strings of
high entropy, so a plain, unsalted SHA-256 is enough: nothing can be guessed from it.

Routers protect themselves with ``Depends(require_viewer)`` or ``Depends(require_operator)``;
probes and ``/metrics`` stay open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from services.common.errors import Forbidden, SpecError, Unauthorized
from services.orchestrator.settings import AuthSettings, Role, TokenEntry

log = logging.getLogger(__name__)
ROLE_RANK: dict[str, int] = {"viewer": 1, "operator": 2}


class AuthConfigError(SpecError):
    code = "auth_config_invalid"


@dataclass(frozen=True)
class Principal:
    """Who made a request."""

    name: str
    role: Role


ANONYMOUS_OPERATOR = Principal("anonymous (auth disabled)", "operator")


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token, the form stored in settings."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def read_tokens_file(path: Path) -> list[TokenEntry]:
    """Tokens from a file: a JSON list, or one ``name:role:sha256`` per line (``#`` comments)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AuthConfigError(f"cannot read tokens file: {exc.strerror}", file=str(path)) from None
    if text.lstrip().startswith("["):
        try:
            return [TokenEntry.model_validate(item) for item in json.loads(text)]
        except (ValueError, ValidationError) as exc:
            raise AuthConfigError(f"invalid tokens JSON: {exc}", file=str(path)) from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3:
            raise AuthConfigError("expected name:role:sha256", file=str(path), line=number)
        item = {"name": parts[0], "role": parts[1], "sha256": parts[2].lower()}
        try:
            entries.append(TokenEntry.model_validate(item))
        except ValidationError as exc:
            message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise AuthConfigError(message, file=str(path), line=number) from None
    return entries


class Authenticator:
    """Checks bearer tokens against the configured hashes."""

    def __init__(self, settings: AuthSettings) -> None:
        entries = list(settings.tokens)
        if settings.tokens_file is not None:
            entries += read_tokens_file(settings.tokens_file)
        self.disabled = settings.disabled
        self._tokens = [(e.sha256, Principal(e.name, e.role)) for e in entries]
        if self.disabled:
            log.warning(
                "authentication is DISABLED (SLUICE_AUTH__DISABLED=true): anyone who can reach "
                "this port can trigger and cancel runs"
            )
        elif not self._tokens:
            raise AuthConfigError(
                "no API token configured: set SLUICE_AUTH__TOKENS or SLUICE_AUTH__TOKENS_FILE, "
                "or start without authentication with SLUICE_AUTH__DISABLED=true"
            )

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a token; raises Unauthorized for a missing or unknown token."""
        if self.disabled:
            return ANONYMOUS_OPERATOR
        if not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        digest = hash_token(token)
        found = None
        for stored, principal in self._tokens:
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise Unauthorized("unknown or revoked bearer token")
        return found


_bearer = HTTPBearer(auto_error=False, description="API token (role viewer or operator)")


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(credentials.credentials if credentials else None)
    request.state.principal = principal
    return principal


def require_viewer(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    """Any valid token."""
    return principal


def require_operator(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    """A token with the ``operator`` role."""
    if ROLE_RANK[principal.role] < ROLE_RANK["operator"]:
        raise Forbidden(f"token {principal.name!r} has role {principal.role}; this needs operator")
    return principal
