"""Authentication and authorization: faceledger-held access keys, SigV4, IAM-subset policies.

* Access keys live in the store; their secrets are sealed with AES-GCM under a *server key*
  (``FACELEDGER_SERVER_KEY``, base64 of 32 bytes, or else ``<data>/server.key``, created with
  mode 0600 on first use), so a copy of the database alone does not give the secrets away.
* Signatures are checked with botocore's own SigV4 implementation on a reconstructed request
  (exactly the headers the client signed, its ``X-Amz-Date``, and the SHA-256 of the body as
  received) and compared in constant time. What a valid signature binds: the method, path and
  query, ``Host`` and ``X-Amz-Date`` (must be signed), ``X-Amz-Target`` and every
  ``X-Faceledger-*`` header when present (an unsigned one is refused), and the body (a client's
  ``X-Amz-Content-SHA256`` is checked against the body, never trusted; ``UNSIGNED-PAYLOAD`` is
  refused).
* Policies are a subset of IAM's JSON: ``Statement: [{Effect, Action, Resource}]`` with ``*``
  and ``?`` wildcards; an explicit Deny wins; no matching Allow, no access.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import AccessDeniedException, ClientFault, ValidationException, _error, clip, preview

UnrecognizedClientException = _error("UnrecognizedClientException")
InvalidSignatureException = _error("InvalidSignatureException")
IncompleteSignatureException = _error("IncompleteSignatureException")
MissingAuthenticationTokenException = _error("MissingAuthenticationTokenException")

AUTH_ERRORS: tuple[type[ClientFault], ...] = (
    UnrecognizedClientException,
    InvalidSignatureException,
    IncompleteSignatureException,
    MissingAuthenticationTokenException,
)

MAX_CLOCK_SKEW = timedelta(minutes=15)
SIGNING_SERVICE = "rekognition"
#: Headers every signature must cover: where the request goes, when it was made.
REQUIRED_SIGNED_HEADERS = ("host", "x-amz-date")
#: Headers that choose what a request does or how it is recorded (the operation; purpose, case, search
#: limits): present in a request, they must be signed. (Without X-Amz-Target no operation runs:
#: UnknownOperationException, as AWS answers.)
SIGNED_IF_PRESENT = ("x-amz-target",)
SIGNED_IF_PRESENT_PREFIX = "x-faceledger-"
CONTENT_SHA256_HEADER = "x-amz-content-sha256"
ADMIN_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["rekognition:*", "faceledger:*"], "Resource": "*"}],
}
_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$", re.S)


# ------------------------------------------------------------------------------- server key


def server_key(data_dir: Path) -> bytes:
    """The key that seals access-key secrets: from the environment, else ``<data>/server.key``."""
    env = os.environ.get("FACELEDGER_SERVER_KEY")
    if env:
        key = base64.b64decode(env)
        if len(key) != 32:
            raise ValueError("FACELEDGER_SERVER_KEY must be the base64 of 32 bytes")
        return key
    path = Path(data_dir) / "server.key"
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        key = os.urandom(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
    if len(key) != 32:
        raise ValueError(f"{path} is not a 32-byte key")
    return key


def seal_secret(key: bytes, access_key_id: str, secret: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode("utf-8"), access_key_id.encode("utf-8"))


def open_secret(key: bytes, access_key_id: str, sealed: bytes) -> str:
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], access_key_id.encode("utf-8")).decode("utf-8")
    except InvalidTag:
        raise RuntimeError(
            f"the secret of {access_key_id} does not open with this server key (FACELEDGER_SERVER_KEY or "
            "<data>/server.key changed?)"
        ) from None


def new_key_pair() -> tuple[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    key_id = "FLAK" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = base64.b64encode(os.urandom(30)).decode("ascii").replace("+", "x").replace("/", "y")
    return key_id, secret


# ------------------------------------------------------------------------------- policies


def _as_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise ValidationException(f"Policy {what} must be a string or a non-empty list of strings")


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, document: str | Mapping[str, Any]) -> "Policy":
        """Parse an IAM-subset policy; ValidationException names what is not supported."""
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except json.JSONDecodeError as exc:
                raise ValidationException(f"Policy is not valid JSON: {exc}") from None
        if not isinstance(document, Mapping):
            raise ValidationException("Policy must be a JSON object with a Statement list")
        unknown = set(document) - {"Version", "Id", "Statement"}
        if unknown:
            raise ValidationException(f"Policy has unsupported members: {', '.join(sorted(unknown))}")
        raw = document.get("Statement")
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list):
            raise ValidationException("Policy must have a Statement list")
        statements = []
        for i, st in enumerate(raw):
            if not isinstance(st, Mapping):
                raise ValidationException(f"Policy Statement {i} is not an object")
            extra = set(st) - {"Sid", "Effect", "Action", "Resource"}
            if extra:
                raise ValidationException(
                    f"Policy Statement {i} has unsupported members {', '.join(sorted(extra))} "
                    "(faceledger supports Effect, Action and Resource)"
                )
            if st.get("Effect") not in ("Allow", "Deny"):
                raise ValidationException(f"Policy Statement {i}: Effect must be Allow or Deny")
            if "Action" not in st or "Resource" not in st:
                raise ValidationException(f"Policy Statement {i} needs Action and Resource")
            statements.append(
                Statement(st["Effect"], tuple(_as_list(st["Action"], "Action")),
                          tuple(_as_list(st["Resource"], "Resource")))
            )
        return cls(tuple(statements))

    def decide(self, action: str, resource: str) -> str:
        """"Allow", "Deny" (explicit) or "ImplicitDeny"."""
        allowed = False
        for st in self.statements:
            if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in st.actions) and any(
                fnmatch.fnmatchcase(resource, r) for r in st.resources
            ):
                if st.effect == "Deny":
                    return "Deny"
                allowed = True
        return "Allow" if allowed else "ImplicitDeny"

    def decide_anywhere(self, action: str) -> str:
        """The decision for ``action`` when its resource is not known yet: "Deny" when a Deny statement for it
        covers every resource (``*``), "ImplicitDeny" when no Allow statement names it on any resource, else
        "Allow" (meaning only: some resource may be allowed; :meth:`decide` has the last word)."""
        allowed = False
        for st in self.statements:
            if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in st.actions):
                continue
            if st.effect == "Deny" and "*" in st.resources:
                return "Deny"
            allowed = allowed or st.effect == "Allow"
        return "Allow" if allowed else "ImplicitDeny"


def authorize_anywhere(policy: Policy, principal: str, action: str,
                       resource_hint: Callable[[], str | None] | None = None) -> None:
    """AccessDeniedException when ``policy`` denies ``action`` on every resource: checked before a request body
    is parsed, so that a key that may not call an operation cannot make the server parse or validate its body.
    The message names the resource ``resource_hint()`` gives (denied there too), else "any resource"."""
    decision = policy.decide_anywhere(action)
    if decision != "Allow":
        why = "an explicit deny in its policy" if decision == "Deny" else "no policy statement allows it"
        resource = resource_hint() if resource_hint is not None else None
        where = f"resource: {clip(resource, 512)}" if resource else "any resource"
        raise AccessDeniedException(
            f"User: {clip(principal, 256)} is not authorized to perform: {clip(action, 256)} on {where} "
            f"because {why}"
        )


def authorize(policy: Policy, principal: str, action: str, resource: str) -> None:
    decision = policy.decide(action, resource)
    if decision != "Allow":
        why = "an explicit deny in its policy" if decision == "Deny" else "no policy statement allows it"
        raise AccessDeniedException(
            f"User: {clip(principal, 256)} is not authorized to perform: {clip(action, 256)} on resource: "
            f"{clip(resource, 512)} because {why}"
        )


# ------------------------------------------------------------------------------- SigV4


@dataclass(frozen=True)
class HttpRequest:
    """What the transport hands over for signature checking."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # case-insensitive lookup expected (Starlette's Headers)
    body: bytes


@dataclass(frozen=True)
class Principal:
    access_key_id: str
    name: str
    policy: Policy


def _parse_authorization(value: str) -> dict[str, str]:
    m = _AUTH_RE.match(value.strip())
    if not m:
        if value.strip().startswith("AWS4-HMAC-SHA256"):
            raise IncompleteSignatureException("Authorization header requires Credential, SignedHeaders and Signature")
        raise IncompleteSignatureException(
            "Authorization header must use AWS Signature Version 4 (AWS4-HMAC-SHA256)"
        )
    parts: dict[str, str] = {}
    for item in m.group(1).split(","):
        name, sep, val = item.strip().partition("=")
        if sep:
            parts[name.strip()] = val.strip()
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not parts.get(p)]
    if missing:
        raise IncompleteSignatureException(
            f"Authorization header requires '{', '.join(missing)}' parameter(s). Authorization="
            f"{preview(value, 200)}"
        )
    return parts


class _Verifier(SigV4Auth):
    """botocore's SigV4 over exactly the headers the client signed (all their values, none dropped: botocore's
    signer leaves out some, e.g. User-Agent, that other SDKs sign) and over the SHA-256 of the body received."""

    def __init__(self, credentials: Credentials, region: str, signed: list[str], payload_sha256: str) -> None:
        super().__init__(credentials, SIGNING_SERVICE, region)
        self._signed, self._payload = signed, payload_sha256

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or [""]:
                chosen[name] = value
        return chosen

    def payload(self, request: AWSRequest) -> str:
        return self._payload


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name`` in arrival order (a repeated header signs as its values joined by ",")."""
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    value = headers.get(name)
    return [] if value is None else [value]


def payload_sha256(headers: Mapping[str, str], body: bytes) -> str:
    """The hex SHA-256 of ``body``, the payload hash a signature must cover.

    A client's ``X-Amz-Content-SHA256`` is never trusted: it must equal the hash of the bytes received
    (``UNSIGNED-PAYLOAD`` and the streaming forms are refused), else InvalidSignatureException."""
    computed = hashlib.sha256(body).hexdigest()
    claimed = _values(headers, CONTENT_SHA256_HEADER)
    if claimed and claimed != [computed]:
        if any(v.strip().upper() == "UNSIGNED-PAYLOAD" or v.strip().upper().startswith("STREAMING-")
               for v in claimed):
            raise InvalidSignatureException(
                "The provided 'x-amz-content-sha256' header does not match what was computed. faceledger "
                f"verifies the SHA-256 of every body: {preview(claimed[0], 64)} is not accepted; sign the payload")
        raise InvalidSignatureException("The provided 'x-amz-content-sha256' header does not match what was computed.")
    return computed


def verify_signature(
    request: HttpRequest, lookup_secret, now: datetime
) -> tuple[str, str]:
    """Check the request's SigV4 signature; returns (access key id, region).

    ``lookup_secret(access_key_id)`` gives the secret or None for an unknown or revoked key. Refused
    (InvalidSignatureException) besides a wrong signature: Host or X-Amz-Date not signed; X-Amz-Target or an
    X-Faceledger-* header present and not signed; an X-Amz-Content-SHA256 that is not the SHA-256 of the body received.
    """
    headers = request.headers
    auth = headers.get("authorization")
    if not auth:
        raise MissingAuthenticationTokenException("Missing Authentication Token")
    parts = _parse_authorization(auth)
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise IncompleteSignatureException(
            "Credential should be scoped to a valid region, service and aws4_request: "
            f"{preview(parts['Credential'], 200)}"
        )
    key_id, day, region, service, _ = scope
    if service != SIGNING_SERVICE:
        raise InvalidSignatureException(f"Credential should be scoped to correct service: '{SIGNING_SERVICE}'")
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        raise IncompleteSignatureException("Authorization requires the X-Amz-Date header")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise IncompleteSignatureException(
            f"X-Amz-Date '{preview(amz_date, 64)}' is not in the ISO 8601 basic format") from None
    if day != amz_date[:8]:
        raise InvalidSignatureException(f"Credential date {preview(day, 64)} does not match X-Amz-Date {amz_date}")
    signed = [h for h in parts["SignedHeaders"].lower().split(";") if h]
    missing = [h for h in REQUIRED_SIGNED_HEADERS + SIGNED_IF_PRESENT
               if h not in signed and (h in REQUIRED_SIGNED_HEADERS or _values(headers, h))]
    if missing:
        raise InvalidSignatureException(
            f"The request must sign the {', '.join(missing)} header{'s' if len(missing) > 1 else ''} "
            f"(SignedHeaders must include {';'.join(REQUIRED_SIGNED_HEADERS + SIGNED_IF_PRESENT)})")
    unsigned = sorted({name.lower() for name in headers.keys()
                       if name.lower().startswith(SIGNED_IF_PRESENT_PREFIX) and name.lower() not in signed})
    if unsigned:
        raise InvalidSignatureException(
            f"Headers present in the request were not signed: {preview(', '.join(unsigned), 200)}. faceledger acts "
            "on X-Faceledger-* headers only when the signature covers them: add them before signing (boto3: the "
            "before-sign event)")
    repeated = sorted({name.lower() for name in headers.keys() if name.lower().startswith(SIGNED_IF_PRESENT_PREFIX)
                       and len(_values(headers, name)) > 1})
    if repeated:  # the signature covers the values joined by commas; the ledger would record only the first
        raise InvalidSignatureException(
            f"Headers repeated in the request: {preview(', '.join(repeated), 200)}. Each X-Faceledger-* header "
            "may appear once (its value is recorded exactly as signed)")
    if abs(now - when) > MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - MAX_CLOCK_SKEW).strftime('%Y%m%dT%H%M%SZ')} ({now.strftime('%Y%m%dT%H%M%SZ')} - 15 min.)"
            if when < now else
            f"Signature not yet current: {amz_date} is still later than "
            f"{(now + MAX_CLOCK_SKEW).strftime('%Y%m%dT%H%M%SZ')} ({now.strftime('%Y%m%dT%H%M%SZ')} + 15 min.)"
        )
    body_sha256 = payload_sha256(headers, request.body)
    secret = lookup_secret(key_id)
    if secret is None:
        raise UnrecognizedClientException("The security token included in the request is invalid.")
    rebuilt = AWSRequest(method=request.method, url="http://host" + request.path
                         + (f"?{request.query}" if request.query else ""))
    for name in dict.fromkeys(signed):
        for value in _values(headers, name):
            rebuilt.headers[name] = value
    rebuilt.context["timestamp"] = amz_date
    signer = _Verifier(Credentials(key_id, secret), region, list(dict.fromkeys(signed)), body_sha256)
    canonical = signer.canonical_request(rebuilt)
    expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
    if not hmac.compare_digest(expected.encode("ascii"), parts["Signature"].encode("ascii", "replace")):
        raise InvalidSignatureException(
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details."
        )
    return key_id, region
