"""Encrypting Jira tokens at rest with rotatable Fernet keys from `JIRA_PIPELINE_FERNET_KEYS`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from jira_pipeline.settings import load_dotenv_once

FERNET_KEYS_VARIABLE = "JIRA_PIPELINE_FERNET_KEYS"


class TokenCipherError(RuntimeError):
    """The encryption keys are missing or malformed (the message never contains a key)."""


class TokenDecryptError(TokenCipherError):
    """A stored token was encrypted with a key that is not (or no longer) configured."""


class TokenCipher:
    """Encrypts with the newest key, decrypts with any configured key, re-encrypts on rotation."""

    def __init__(self, keys: Sequence[str]) -> None:
        keys = [key.strip() for key in keys if key.strip()]
        if not keys:
            raise TokenCipherError(
                f"{FERNET_KEYS_VARIABLE} is not set: token encryption needs at least one key "
                "(create one with `jira-pipeline keys generate`)"
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                # Never echo the value: it is (meant to be) a secret.
                raise TokenCipherError(
                    f"{FERNET_KEYS_VARIABLE}: key #{position} of {len(keys)} is not a valid Fernet "
                    "key (32 url-safe base64-encoded bytes; create one with "
                    "`jira-pipeline keys generate`)"
                ) from None
        self._cipher = MultiFernet(fernets)
        self._newest = fernets[0]
        self.key_count = len(fernets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenCipher:
        """The cipher for the comma-separated keys in `JIRA_PIPELINE_FERNET_KEYS`, newest first."""
        if environ is None:
            load_dotenv_once()
            environ = os.environ
        return cls(environ.get(FERNET_KEYS_VARIABLE, "").split(","))

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, plaintext: str) -> str:
        return self._cipher.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._cipher.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise TokenDecryptError(
                f"a stored token cannot be decrypted with any key in {FERNET_KEYS_VARIABLE}: "
                "the key that encrypted it was removed or the variable holds different keys"
            ) from None

    def rotate(self, token: str) -> str:
        """`token` re-encrypted with the newest key (decryptable with any configured key)."""
        try:
            return self._cipher.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise TokenDecryptError(
                f"a stored token cannot be re-encrypted: no key in {FERNET_KEYS_VARIABLE} "
                "decrypts it (was the key that encrypted it removed?)"
            ) from None

    def is_current(self, token: str) -> bool:
        """True when `token` was encrypted with the newest key (so no older key is needed)."""
        # Fernet tokens do not name their key: trying the newest alone is the only test.
        try:
            self._newest.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def __repr__(self) -> str:
        return f"TokenCipher(<{self.key_count} key(s)>)"
