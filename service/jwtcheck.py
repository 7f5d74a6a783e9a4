"""Who may call: the CDS Hooks JWT, checked before anything else reads the request.

PyJWT does the signature and the standard claims; the wrapper closes what it leaves open:

- Algorithm confusion. `jwt.decode(algorithms=[header alg])` would let the token choose how it
  is checked. Here the allow-list is asymmetric only (ES*, RS*, PS*; never `none` or HS*), and the
  token is verified with the algorithm of the *key* it names: the JWK's own `alg`, or its curve
  for an EC key; a header that names another algorithm is refused.
- A JWK without `alg`: PyJWK guesses RS256 for every RSA key, so an RS384 token would fail or, for
  an EC key, a wrong curve would be accepted as another size; the wrapper picks the algorithm.
- Keys from the token. A `jku` header is used only when it is on the issuer's allow-list and is
  otherwise refused without any request; `jwk`, `x5u` and `x5c` headers are never used; a `crit`
  header (extensions we do not implement) is refused.
- Claims PyJWT reads too leniently: exp, iat and nbf must be NumericDates (RFC 7519: a JSON number
  of seconds), but PyJWT takes `int(value)`, so `"exp": "1764…"` (a string) passed and `true`
  counted as 1; here a string, a boolean or a number no float holds (1e999) is refused before
  the key is looked up. A fraction is a NumericDate (RFC 7519: "non-integer values can be
  represented"), and taken.
- exp far ahead (`"exp": 1e30`) does not make a token valid for ever: it is accepted only while
  iat is at most five minutes old, and its jti is remembered exactly that long
  (`jti_retention`), not until its exp. Refusing an exp more than five minutes ahead (CDS Hooks
  2.0 asks clients for that) would refuse EHRs that mint tokens for an hour, which the issue's
  contract (`exp` required, 60 s skew) accepts.
- Claims PyJWT does not require by default: exp, iat, jti, iss and aud are all required; iat may
  not be in the future (PyJWT would allow the whole 60 s leeway there: here only the
  `IAT_GRANULARITY_SECONDS` a client's whole-second clock can be ahead) nor older than five
  minutes, which PyJWT does not check; a jti is accepted once per issuer while unexpired (the
  decision log's seen_jti table).
- The audience is exactly the endpoint's URL under the configured public base URL, never the
  Host header: a string (or a list of that one URL), not a list that also names other services.
- Unknown kid: the issuer's key set is fetched again, at most once per `jwks_refetch_seconds`
  counted from the last refetch (the first load does not start the interval, so a key rotated
  in just after it is found at once); a stream of bad kids cannot make the service hammer the
  EHR, and a key set that cannot be loaded is tried again only after the same interval.
- Revoked keys: a key set is trusted for `jwks_max_age_seconds` after it was loaded (shorter when
  the JWKS response's `Cache-Control` says `max-age`, `no-cache` or `no-store`, but never under
  `jwks_refetch_seconds`), then loaded again before a token is checked against it; a JWKS file is
  read again as soon as it changes (its mtime, size or inode). Without this a key the EHR removed
  stayed trusted until the service restarted, since only an unknown kid caused a fetch. A key set
  past its age that cannot be loaded again is not trusted (fail closed: a 401, not a revoked key
  accepted), and is tried again after `jwks_refetch_seconds`.

Every failure raises `Rejected` with a reason for the server log; the caller answers 401 with no
detail, and nothing here logs or keeps the token.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from fsgs_kb.service.config import Issuer, ServiceConfig

ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
SKEW_SECONDS = 60
IAT_GRANULARITY_SECONDS = 2  # iat is whole seconds: a client's clock may round up to the next one
MAX_AGE_SECONDS = 300
MAX_TOKEN_BYTES = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
MIN_KEY_AGE_SECONDS = 1.0  # a key set is kept at least this long, whatever its Cache-Control says


NUMERIC_DATES = ("exp", "iat", "nbf")
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]+)\"?\s*(?:,|$)", re.IGNORECASE)
NOT_CACHED = re.compile(r"(?:^|,)\s*(no-cache|no-store)\s*(?:[,=]|$)", re.IGNORECASE)


class Rejected(Exception):
    """The token is not accepted; the message is for the server log only."""


@dataclass
class Key:
    """One JWK of a fetched set, and the verification key made from it per algorithm (cached:
    building an EC key from its JWK costs as much as a tenth of a verification)."""

    jwk: dict[str, Any]
    prepared: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeySet:
    keys: dict[str, Key] = field(default_factory=dict)
    refetched: float = float("-inf")  # when it was last loaded again for an unknown kid (or tried)
    expires: float = float("inf")  # clock time from which its keys are not trusted until loaded again
    stamp: tuple[int, int, int] | None = None  # a file's (mtime_ns, size, inode) when it was read
    retry_at: float = float("-inf")  # after a failed load of a stale set: when to try again


@dataclass
class Loaded:
    """What one load of a key set gave: its keys, how long the source says they may be kept
    (Cache-Control; None when it does not say) and, for a file, its stamp."""

    keys: dict[str, Key]
    max_age: float | None = None
    stamp: tuple[int, int, int] | None = None


def cache_max_age(header: str | None) -> float | None:
    """Seconds a JWKS response may be kept by its Cache-Control (max-age; 0 for no-cache or
    no-store), or None when it says neither."""
    if not header:
        return None
    if NOT_CACHED.search(header):
        return 0.0
    found = MAX_AGE.search(header)
    return float(found.group(1)) if found else None


def file_stamp(path: str) -> tuple[int, int, int] | None:
    """A file's (mtime_ns, size, inode): a changed one means the file was rewritten or replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _numeric_date_problem(value: Any) -> str | None:
    """Why a claim is not a NumericDate, or None: a JSON number (not a boolean, which Python
    counts as an int) that a float holds finitely (remember_jti and the iat checks compute with it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a NumericDate (a JSON number of seconds)"
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return "is not a NumericDate (a JSON number of seconds)"
    if not math.isfinite(number):
        return "is not a NumericDate (a JSON number of seconds)"
    return None


def jti_retention(claims: dict[str, Any]) -> float:
    """Until when a token's jti must be remembered: as long as the token could be accepted again,
    i.e. until its exp (with the clock skew) or until its iat is too old, whichever comes first."""
    return min(float(claims["exp"]) + SKEW_SECONDS, float(claims["iat"]) + MAX_AGE_SECONDS + SKEW_SECONDS)


def key_algorithm(jwk: dict[str, Any], header_alg: str) -> str:
    """The algorithm a JWK verifies with; Rejected when it cannot verify this token's header."""
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if jwk.get("use", "sig") != "sig" or ("key_ops" in jwk and "verify" not in jwk["key_ops"]):
        raise Rejected("key not for signature verification")
    if kty == "EC":
        own = EC_CURVES.get(str(jwk.get("crv")))
        if own is None or (alg is not None and alg != own):
            raise Rejected("EC key with an unsupported curve or a mismatched alg")
    elif kty == "RSA":
        own = alg if alg is not None else header_alg
        if not str(own).startswith(("RS", "PS")):
            raise Rejected("RSA key with a non-RSA alg")
    else:
        raise Rejected(f"key type {kty!r} not allowed")
    if own not in ALGORITHMS or own != header_alg:
        raise Rejected("header alg differs from the key's algorithm")
    return str(own)


class KeyStore:
    """Each issuer's key sets by source (URL or file), fetched lazily, loaded again once older than
    their maximum age (a file also when it changes), and refetched for an unknown kid at most once
    per interval; one fetch at a time per source."""

    def __init__(
        self, refetch_seconds: float, max_age_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refetch_seconds = refetch_seconds
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self.sets: dict[str, KeySet] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.client: httpx.AsyncClient | None = None

    def _fresh(self, source: str, current: KeySet) -> bool:
        """Whether a loaded set may still be trusted: younger than its age, and its file unchanged."""
        if self.clock() >= current.expires:
            return False
        return current.stamp is None or file_stamp(source) == current.stamp

    async def key(self, source: str, kid: str) -> Key:
        current = self.sets.get(source)
        if current is not None and kid in current.keys and self._fresh(source, current):
            return current.keys[kid]
        lock = self.locks.setdefault(source, asyncio.Lock())
        async with lock:
            current = self.sets.get(source)
            now = self.clock()
            if current is None:
                current = await self._reload(source, None, first=True)
            elif not self._fresh(source, current):
                if now >= current.retry_at:  # past its age or changed: loaded again at once
                    current = await self._reload(source, current, first=True)
            elif kid not in current.keys and now - current.refetched >= self.refetch_seconds:
                current = await self._reload(source, current, first=False)
        if not self._fresh(source, current):
            raise Rejected("key set past its maximum age (or changed) and not loaded again")
        if kid not in current.keys:
            raise Rejected("unknown kid")
        return current.keys[kid]

    async def _reload(self, source: str, current: KeySet | None, *, first: bool) -> KeySet:
        """Load the set again. A load for age or change is counted as a first load (the refetch
        interval for unknown kids starts anew). On failure the keys known are kept, but a set
        that was stale stays untrusted until a load succeeds, tried again after the interval."""
        now = self.clock()
        try:
            loaded = await self._load(source)
        except Rejected:
            if current is None:
                self.sets[source] = KeySet({}, now)
            elif self._fresh(source, current):
                current.refetched = now
            else:
                current.expires, current.retry_at = now, now + self.refetch_seconds
            raise
        age = self.max_age_seconds
        if loaded.max_age is not None:  # the EHR's own Cache-Control, bounded by the configuration
            age = min(age, loaded.max_age)
        age = max(age, self.refetch_seconds, MIN_KEY_AGE_SECONDS)  # at most one fetch per refetch interval
        done = KeySet(loaded.keys, float("-inf") if first else now, now + age, loaded.stamp)
        self.sets[source] = done
        return done

    async def _load(self, source: str) -> Loaded:
        try:
            if source.startswith(("https://", "http://")):
                raw, max_age = await self._fetch(source)
                stamp = None
            else:
                stamp, max_age = file_stamp(source), None
                raw = Path(source).read_bytes()[: MAX_JWKS_BYTES + 1]
                if stamp is None or file_stamp(source) != stamp:  # rewritten while read: read next time
                    stamp = (-1, -1, -1)
            if len(raw) > MAX_JWKS_BYTES:
                raise Rejected("key set too large")
            keys = json.loads(raw)["keys"]
            found = {k["kid"]: Key(k) for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
            return Loaded(found, max_age, stamp)
        except (OSError, ValueError, KeyError, TypeError, httpx.HTTPError) as exc:
            raise Rejected(f"key set unavailable: {type(exc).__name__}") from None

    async def _fetch(self, url: str) -> tuple[bytes, float | None]:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False)
        async with self.client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise Rejected(f"key set answered {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    break
            return body, cache_max_age(response.headers.get("Cache-Control"))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class TokenChecker:
    """Checks the Authorization header of one request against the configuration."""

    def __init__(self, config: ServiceConfig, keys: KeyStore, remember_jti: Callable[[str, str, float], bool]) -> None:
        self.config = config
        self.keys = keys
        self.remember_jti = remember_jti

    async def check(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims; Rejected for any failure."""
        if not authorization or len(authorization) > MAX_TOKEN_BYTES:
            raise Rejected("no bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Rejected("not a bearer token")
        token = token.strip()
        header = self._header(token)
        unverified = self._payload(token)
        issuer = self._issuer(unverified)
        source = self._key_source(header, issuer)
        key = await self.keys.key(source, header["kid"])
        claims = self._verify(token, key, header["alg"], issuer.iss, audience)
        if not self.remember_jti(issuer.iss, claims["jti"], jti_retention(claims)):
            raise Rejected("jti already used")
        return claims

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Rejected("malformed token") from None
        if not isinstance(header.get("alg"), str) or header["alg"] not in ALGORITHMS:
            raise Rejected("alg not allowed")
        if header.get("typ") != "JWT":
            raise Rejected("typ is not JWT")
        if not isinstance(header.get("kid"), str) or not header["kid"]:
            raise Rejected("no kid")
        if "crit" in header:
            raise Rejected("crit header")
        return header

    @staticmethod
    def _payload(token: str) -> dict[str, Any]:
        """The claims before the signature is checked; Rejected when they cannot be the ones
        verified (the signature covers these same bytes)."""
        try:
            unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Rejected("malformed payload") from None
        for name in NUMERIC_DATES:
            if name in unverified and (problem := _numeric_date_problem(unverified[name])) is not None:
                raise Rejected(f"{name} {problem}")
        return unverified

    def _issuer(self, unverified: dict[str, Any]) -> Issuer:
        iss = unverified.get("iss")
        issuer = self.config.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Rejected("untrusted iss")
        return issuer

    @staticmethod
    def _key_source(header: dict[str, Any], issuer: Issuer) -> str:
        jku = header.get("jku")
        if jku is None:
            return issuer.key_source
        if not isinstance(jku, str) or jku not in issuer.allowed_jku:
            raise Rejected("jku not allowed for this issuer")
        return jku

    @staticmethod
    def _verify(token: str, key: Key, header_alg: str, iss: str, audience: str) -> dict[str, Any]:
        alg = key_algorithm(key.jwk, header_alg)
        try:
            if alg not in key.prepared:
                key.prepared[alg] = jwt.PyJWK(key.jwk, algorithm=alg).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.prepared[alg],
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=SKEW_SECONDS,
                options={"require": ["exp", "iat", "jti", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Rejected(f"verification failed: {type(exc).__name__}") from None
        iat = claims["iat"]
        if not isinstance(iat, (int, float)) or time.time() - iat > MAX_AGE_SECONDS:
            raise Rejected("iat too old")
        if iat > time.time() + IAT_GRANULARITY_SECONDS:
            raise Rejected("iat in the future")
        if claims["aud"] != audience and claims["aud"] != [audience]:
            raise Rejected("aud names other services too")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise Rejected("empty jti")
        return claims
