"""Encrypting Jira tokens at rest with rotatable Fernet keys from `JIRA_PIPELINE_FERNET_KEYS`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from jira_pipeline.settings import ConfigurationError, PipelineSettings, load_settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

# cryptography is imported by the cipher's first use: a site without OAuth tokens (every run of
# an API-token or PAT site, every code-location load) never needs it.

FERNET_KEYS_VARIABLE = "JIRA_PIPELINE_FERNET_KEYS"


class TokenCipherError(RuntimeError):
    """Stored tokens cannot be used with the configured keys (missing or malformed keys are a
    `ConfigurationError` naming JIRA_PIPELINE_FERNET_KEYS); the message never contains a key."""


class TokenDecryptError(TokenCipherError):
    """A stored token was encrypted with a key that is not (or no longer) configured."""


class TokenCipher:
    """Encrypts with the newest key, decrypts with any configured key, re-encrypts on rotation."""

    def __init__(self, keys: Sequence[str]) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        keys = [key.strip() for key in keys if key.strip()]
        if not keys:
            raise ConfigurationError(
                FERNET_KEYS_VARIABLE, "is not set: token encryption needs at least one key "
                "(create one with `jira-pipeline keys generate`)"
            )
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                # Never echo the value: it is (meant to be) a secret.
                raise ConfigurationError(
                    FERNET_KEYS_VARIABLE, f"holds key #{position} of {len(keys)}, which is not a "
                    "valid Fernet key (32 url-safe base64-encoded bytes; create one with "
                    "`jira-pipeline keys generate`)"
                ) from None
        self._cipher = MultiFernet(fernets)
        self._newest = fernets[0]
        self.key_count = len(fernets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenCipher:
        """The cipher for the comma-separated keys in `JIRA_PIPELINE_FERNET_KEYS`, newest first."""
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> TokenCipher:
        keys = settings.fernet_keys
        return cls(keys.get_secret_value().split(",") if keys is not None else [])

    @staticmethod
    def generate_key() -> str:
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode("ascii")

    def encrypt(self, plaintext: str) -> str:
        return self._cipher.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._cipher.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise TokenDecryptError(
                f"a stored token cannot be decrypted with any key in {FERNET_KEYS_VARIABLE}: "
                "the key that encrypted it was removed or the variable holds different keys"
            ) from None

    def rotate(self, token: str) -> str:
        """`token` re-encrypted with the newest key (decryptable with any configured key)."""
        from cryptography.fernet import InvalidToken

        try:
            return self._cipher.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise TokenDecryptError(
                f"a stored token cannot be re-encrypted: no key in {FERNET_KEYS_VARIABLE} "
                "decrypts it (was the key that encrypted it removed?)"
            ) from None

    def is_current(self, token: str) -> bool:
        """True when `token` was encrypted with the newest key (so no older key is needed)."""
        from cryptography.fernet import InvalidToken

        # Fernet tokens do not name their key: trying the newest alone is the only test.
        try:
            self._newest.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def __repr__(self) -> str:
        return f"TokenCipher(<{self.key_count} key(s)>)"
