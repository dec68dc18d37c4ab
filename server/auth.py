"""Bearer JWTs for API callers and signed stream tokens for the CDN.

Both are HS256 JWTs. Bearer tokens carry `sub` (user id), `exp` and an optional
`role: admin`. Stream tokens are bound to stream, session, user and quality,
so a CDN edge holding the shared key can check a playback request offline.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import jwt
from aiohttp import web
from jwt.algorithms import HMACAlgorithm

from protocol.errors import Forbidden, Unauthorized

ALGORITHM: Final = "HS256"
STREAM_AUDIENCE: Final = "droptv-cdn"


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    is_admin: bool = False


def mint_bearer(secret: str, user_id: str, *, admin: bool = False, ttl: float = 3600.0) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + int(ttl)}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Bearer tokens verified recently, by the exact token string: (secret, caller, exp). A token
# verifies the same way until its `exp`, so a client's repeat requests (a player polls with one
# token) skip the signature and JSON work. Bounded; the oldest entries go first.
VERIFIED_MAX: Final = 10_000
_verified: dict[str, tuple[str, Caller, float]] = {}


def verify_bearer(secret: str, token: str, *, remember: bool = True) -> Caller:
    """Raise Unauthorized for anything but a valid, unexpired token with a subject.

    `remember=False` (a websocket connect: once per socket) uses but does not fill the cache.
    """
    hit = _verified.get(token)
    if hit is not None and hit[0] == secret and time.time() < hit[2]:
        return hit[1]
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token expired", field="Authorization") from None
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token", field="Authorization") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Invalid token", field="Authorization")
    caller = Caller(user_id=sub, is_admin=claims.get("role") == "admin")
    if not remember:
        return caller
    if len(_verified) >= VERIFIED_MAX:
        del _verified[next(iter(_verified))]
    _verified[token] = (secret, caller, float(claims["exp"]))
    return caller


def bearer_from(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'", field="Authorization")
        return token.strip()
    return None


def optional_caller(request: web.Request, secret: str) -> Caller | None:
    """Public GETs: a token fills `user_state`; a bad one is still a 401, not silently ignored."""
    token = bearer_from(request)
    return verify_bearer(secret, token) if token else None


def required_caller(request: web.Request, secret: str) -> Caller:
    token = bearer_from(request)
    if token is None:
        raise Unauthorized("Authentication required", field="Authorization")
    return verify_bearer(secret, token)


def required_admin(request: web.Request, secret: str) -> Caller:
    caller = required_caller(request, secret)
    if not caller.is_admin:
        raise Forbidden("Admin role required")
    return caller


@dataclass(frozen=True, slots=True)
class StreamToken:
    token: str
    expires_at: datetime


@functools.lru_cache(maxsize=4096)
def channel_key(master: str, kid: str) -> bytes:
    """The signing key of one channel key version: HMAC-SHA256(master, kid) (memoized).

    A CDN edge holding only the master key derives the same key from the
    token's `kid` header, so rotating one channel needs no key distribution.
    """
    return hmac.new(master.encode(), kid.encode(), hashlib.sha256).digest()


def key_id(channel_id: str, version: int) -> str:
    return f"{channel_id}.v{version}"


class _PreparedHS256(HMACAlgorithm):
    """HS256 that checks each signing key once: PyJWT re-checks the key on every call (PEM, SSH,
    DER and JWK sniffing), which was most of the cost of minting a stream token."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)
            if len(self._prepared) < 4096:
                self._prepared[key] = prepared
        return prepared


# Signs stream tokens (hot: every heartbeat and websocket token). Same output as jwt.encode.
_STREAM_JWS: Final = jwt.PyJWS()
_STREAM_JWS.unregister_algorithm(ALGORITHM)
_STREAM_JWS.register_algorithm(ALGORITHM, _PreparedHS256())


def mint_stream_token(
    master: str,
    *,
    channel_id: str,
    key_version: int,
    stream_id: str,
    session_id: str,
    user_id: str,
    quality: str,
    ttl: float,
    now: float | None = None,
) -> StreamToken:
    issued = time.time() if now is None else now
    exp = int(issued + ttl)
    claims = {
        "aud": STREAM_AUDIENCE,
        "iat": int(issued),
        "exp": exp,
        "stream_id": stream_id,
        "sid": session_id,
        "sub": user_id,
        "quality": quality,
    }
    kid = key_id(channel_id, key_version)
    payload = json.dumps(claims, separators=(",", ":")).encode()
    token = _STREAM_JWS.encode(
        payload, channel_key(master, kid), algorithm=ALGORITHM, headers={"kid": kid}
    )
    return StreamToken(token, datetime.fromtimestamp(exp, UTC))


def verify_stream_token(master: str, token: str, *, min_version: int = 1) -> dict[str, object]:
    """What a CDN edge does: derive the key from `kid`, check signature, audience and expiry.

    `min_version` lets an edge refuse tokens signed before a rotation once their grace is over.
    """
    kid = jwt.get_unverified_header(token).get("kid")
    if not isinstance(kid, str) or ".v" not in kid:
        raise jwt.InvalidTokenError("stream token without a key id")
    version = kid.rsplit(".v", 1)[1]
    if not version.isdigit() or int(version) < min_version:
        raise jwt.InvalidTokenError("stream token signed with a retired key")
    return dict(
        jwt.decode(
            token, channel_key(master, kid), algorithms=[ALGORITHM], audience=STREAM_AUDIENCE
        )
    )
