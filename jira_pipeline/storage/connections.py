"""The `jira_connections` repository: Jira sites to sync, with their tokens encrypted at rest."""

from __future__ import annotations

import builtins
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.database import Database

from jira_pipeline.storage.crypto import TokenCipher, TokenDecryptError
from jira_pipeline.storage.entities import CONNECTIONS_COLLECTION
from jira_pipeline.storage.indexes import ensure_indexes
from jira_pipeline.timeutil import parse_jira_datetime, utc_now

AUTH_TYPES = ("oauth", "api_token", "pat")
_TOKEN_FIELDS = ("access_token_encrypted", "refresh_token_encrypted")


class JiraConnectionError(LookupError):
    """A connection that cannot be added, found or updated as asked."""


class ConnectionNotFoundError(JiraConnectionError):
    """No connection has that id or name."""


class StaleRefreshTokenError(JiraConnectionError):
    """Someone else rotated the refresh token first; the stored one is newer than ours."""


@dataclass(frozen=True)
class Connection:
    """A Jira site the pipeline syncs; never holds a token."""

    id: str
    name: str
    site_url: str
    auth_type: str
    cloud_id: str | None
    email: str | None  # the account of an `api_token` connection (basic auth needs both)
    token_expires_at: datetime | None
    has_tokens: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class KeyRotation:
    """What `rotate_keys` did, and whether the older keys are still needed."""

    re_encrypted: int  # tokens written under the newest key
    retried: int  # writes repeated because a token changed under them
    with_tokens: int  # connections holding at least one token
    current: int  # of those, how many hold tokens under the newest key only
    behind: tuple[str, ...]  # names of connections still holding a token under an older key
    unreadable: tuple[str, ...]  # names of connections holding a token no configured key opens

    @property
    def old_keys_needed(self) -> bool:
        return self.current < self.with_tokens


@dataclass(frozen=True)
class _DocumentRotation:
    re_encrypted: int
    retried: int
    unreadable: bool = False


@dataclass(frozen=True)
class StoredTokens:
    """Decrypted tokens of one connection; the repr never shows them."""

    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None


def _fingerprint(token: str) -> str:
    # Guards compare-and-set without keeping the token itself: a refresh token is long and random,
    # so its hash reveals nothing usable.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _secret_text(value: Any) -> str:
    """A token passed as `str` or as pydantic's `SecretStr`."""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter is not None else value)


class ConnectionRepository:
    """Adds, finds, lists and removes connections; saves rotated tokens atomically."""

    def __init__(self, db: Database, cipher: TokenCipher | None = None) -> None:
        self._collection = db[CONNECTIONS_COLLECTION]
        self._cipher = cipher
        ensure_indexes(db, [CONNECTIONS_COLLECTION])

    @property
    def cipher(self) -> TokenCipher:
        # Read lazily: listing or removing connections must work without the keys.
        if self._cipher is None:
            self._cipher = TokenCipher.from_env()
        return self._cipher

    def add(
        self,
        name: str,
        site_url: str,
        *,
        auth_type: str = "oauth",
        cloud_id: str | None = None,
        email: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        token_expires_at: datetime | None = None,
    ) -> Connection:
        if auth_type not in AUTH_TYPES:
            choices = ", ".join(AUTH_TYPES)
            raise JiraConnectionError(f"auth type must be one of {choices}, not {auth_type!r}")
        if not name.strip():
            raise JiraConnectionError("a connection needs a name")
        if auth_type == "api_token" and not email:
            raise JiraConnectionError("an api_token connection needs the account's email")
        if self._collection.find_one({"name": name}, {"_id": 1}) is not None:
            raise JiraConnectionError(f"a connection named {name!r} already exists")
        connection_id = uuid.uuid4()
        now = utc_now()
        document: dict[str, Any] = {
            "_id": connection_id,
            "id": str(connection_id),
            "name": name,
            "site_url": site_url.rstrip("/"),
            "cloud_id": cloud_id,
            "email": email,
            "auth_type": auth_type,
            "access_token_encrypted": None,
            "refresh_token_encrypted": None,
            "refresh_token_sha256": None,
            "token_expires_at": None,
            "created_at": now,
            "updated_at": now,
        }
        document.update(self._token_fields(access_token, refresh_token, token_expires_at))
        self._collection.insert_one(document)
        return self.get(str(connection_id))

    def get(self, id_or_name: str) -> Connection:
        return _connection(self._find(id_or_name))

    def list(self) -> list[Connection]:
        return [_connection(doc) for doc in self._collection.find({}).sort("name", 1)]

    def remove(self, id_or_name: str) -> Connection:
        document = self._find(id_or_name)
        self._collection.delete_one({"_id": document["_id"]})
        return _connection(document)

    def tokens(self, id_or_name: str) -> StoredTokens:
        document = self._find(id_or_name)
        access, refresh = (
            self.cipher.decrypt(document[name]) if document.get(name) else None
            for name in _TOKEN_FIELDS
        )
        return StoredTokens(access, refresh, parse_jira_datetime(document.get("token_expires_at")))

    def save_tokens(
        self,
        id_or_name: str,
        *,
        access_token: str | None,
        refresh_token: str | None,
        expires_at: datetime | None,
        previous_refresh_token: str | None = None,
    ) -> None:
        """Store new tokens in one atomic write.

        With `previous_refresh_token`, the write happens only while that token is the stored one
        (compare-and-set), so of two processes that refreshed at once, the one holding the older
        token cannot overwrite the newer; it gets StaleRefreshTokenError instead.
        """
        document = self._find(id_or_name)
        selector: dict[str, Any] = {"_id": document["_id"]}
        if previous_refresh_token is not None:
            selector["refresh_token_sha256"] = _fingerprint(previous_refresh_token)
        fields = self._token_fields(access_token, refresh_token, expires_at)
        result = self._collection.update_one(
            selector, {"$set": {**fields, "updated_at": utc_now()}}
        )
        if result.matched_count == 0:
            raise StaleRefreshTokenError(
                f"connection {document['name']!r}: the stored refresh token is no longer the one "
                "this process refreshed with (another process rotated it first)"
            )

    def rotate_keys(self, *, attempts: int = 5, passes: int = 3) -> KeyRotation:
        """Re-encrypt every stored token with the newest key, then count what is under it.

        Each write is compare-and-set against the ciphertexts read: when a token changed under
        it (a process still holding only an old key saved a rotated token meanwhile), the
        document is read again and re-encrypted, up to `attempts` times. Documents saved under
        an old key after their turn are found by the closing survey and get another pass.
        """
        re_encrypted = retried = 0
        unreadable: set[str] = set()
        behind = self._documents_behind()
        for _ in range(passes):
            if not behind:
                break
            for document in behind:
                outcome = self._rotate_document(document, attempts)
                re_encrypted += outcome.re_encrypted
                retried += outcome.retried
                if outcome.unreadable:
                    unreadable.add(document["name"])
            behind = self._documents_behind()
        with_tokens = self._collection.count_documents(
            {"$or": [{name: {"$nin": [None, ""]}} for name in _TOKEN_FIELDS]}
        )
        names = sorted(document["name"] for document in behind)
        return KeyRotation(
            re_encrypted=re_encrypted,
            retried=retried,
            with_tokens=with_tokens,
            current=with_tokens - len(names),
            behind=tuple(name for name in names if name not in unreadable),
            unreadable=tuple(name for name in names if name in unreadable),
        )

    def _documents_behind(self) -> builtins.list[dict[str, Any]]:
        """The connections holding a token that the newest key alone cannot decrypt."""
        projection = {"name": 1, **{name: 1 for name in _TOKEN_FIELDS}}
        return [
            document
            for document in self._collection.find({}, projection)
            if self._stale_fields(document)
        ]

    def _stale_fields(self, document: dict[str, Any]) -> builtins.list[str]:
        return [
            name
            for name in _TOKEN_FIELDS
            if document.get(name) and not self.cipher.is_current(document[name])
        ]

    def _rotate_document(self, document: dict[str, Any], attempts: int) -> _DocumentRotation:
        retried = 0
        projection = {"name": 1, **{name: 1 for name in _TOKEN_FIELDS}}
        for attempt in range(attempts):
            stale = self._stale_fields(document)
            if not stale:
                return _DocumentRotation(0, retried)
            try:
                changes = {name: self.cipher.rotate(document[name]) for name in stale}
            except TokenDecryptError:
                return _DocumentRotation(0, retried, unreadable=True)
            # Guarded by every token field as read: a token saved meanwhile (perhaps under an old
            # key) fails the guard and is read again, never skipped.
            selector = {"_id": document["_id"]}
            selector.update({name: document.get(name) for name in _TOKEN_FIELDS})
            if self._collection.update_one(selector, {"$set": changes}).matched_count:
                return _DocumentRotation(len(changes), retried)
            reread = self._collection.find_one({"_id": document["_id"]}, projection)
            if reread is None:  # removed meanwhile: nothing left to rotate
                return _DocumentRotation(0, retried)
            document = reread
            if attempt + 1 < attempts:
                retried += 1
        return _DocumentRotation(0, retried)

    def _token_fields(
        self, access_token: Any, refresh_token: Any, expires_at: datetime | None
    ) -> dict[str, Any]:
        access = _secret_text(access_token) if access_token is not None else None
        refresh = _secret_text(refresh_token) if refresh_token is not None else None
        return {
            "access_token_encrypted": self.cipher.encrypt(access) if access else None,
            "refresh_token_encrypted": self.cipher.encrypt(refresh) if refresh else None,
            "refresh_token_sha256": _fingerprint(refresh) if refresh else None,
            "token_expires_at": parse_jira_datetime(expires_at),
        }

    def _find(self, id_or_name: str) -> dict[str, Any]:
        document = self._collection.find_one({"id": id_or_name}) or self._collection.find_one(
            {"name": id_or_name}
        )
        if document is None:
            raise ConnectionNotFoundError(f"no connection with id or name {id_or_name!r}")
        return document


def _connection(document: dict[str, Any]) -> Connection:
    return Connection(
        id=document["id"],
        name=document["name"],
        site_url=document["site_url"],
        auth_type=document["auth_type"],
        cloud_id=document.get("cloud_id"),
        email=document.get("email"),
        token_expires_at=parse_jira_datetime(document.get("token_expires_at")),
        has_tokens=any(document.get(name) for name in _TOKEN_FIELDS),
        created_at=parse_jira_datetime(document["created_at"]),
        updated_at=parse_jira_datetime(document["updated_at"]),
    )


class TokenPersister:
    """Saves the tokens an OAuth client rotated, compare-and-set against the token they replaced.

    Call it as `persist(refresh_token, access_token, expires_at)`, or with one grant object
    that has those attributes (the Jira client's `OAuthTokens`). The guard is the grant's
    `previous_refresh_token` when it carries one, else the refresh token this persister last
    saw. Raises on failure (StaleRefreshTokenError when another process rotated first), so the
    client never uses tokens that were not stored.
    """

    def __init__(self, repository: ConnectionRepository, connection_id: str) -> None:
        self._repository = repository
        self._connection_id = connection_id
        self._previous_refresh = repository.tokens(connection_id).refresh_token

    def __call__(
        self,
        refresh_token: Any,
        access_token: Any = None,
        expires_at: datetime | None = None,
        previous_refresh_token: Any = None,
    ) -> None:
        if access_token is None and hasattr(refresh_token, "refresh_token"):
            grant = refresh_token
            refresh_token, access_token = grant.refresh_token, grant.access_token
            expires_at = grant.expires_at
            previous_refresh_token = getattr(grant, "previous_refresh_token", None)
        previous = (
            _secret_text(previous_refresh_token)
            if previous_refresh_token is not None
            else self._previous_refresh
        )
        new_refresh = _secret_text(refresh_token)
        self._repository.save_tokens(
            self._connection_id,
            access_token=access_token,
            refresh_token=new_refresh,
            expires_at=expires_at,
            previous_refresh_token=previous,
        )
        self._previous_refresh = new_refresh


def make_token_persister(
    repository: ConnectionRepository, connection_id: str
) -> Callable[..., None]:
    """The callback an OAuth client calls with rotated tokens (see TokenPersister)."""
    return TokenPersister(repository, connection_id)


def make_token_loader(repository: ConnectionRepository, connection_id: str) -> Callable[[], Any]:
    """The callback an OAuth client calls to re-read the stored tokens before refreshing.

    Returns the Jira client's `OAuthTokens` (None when the connection holds no refresh token),
    so a process adopts tokens another process already rotated.
    """

    def load() -> Any:
        # Imported here: storage does not depend on the Jira client unless this is used.
        from pydantic import SecretStr

        from jira_pipeline.jira.auth import OAuthTokens

        stored = repository.tokens(connection_id)
        if not stored.refresh_token:
            return None
        return OAuthTokens(
            access_token=SecretStr(stored.access_token or ""),
            refresh_token=SecretStr(stored.refresh_token),
            expires_at=stored.expires_at or utc_now(),
        )

    return load
