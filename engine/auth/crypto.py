"""Key derivation from the app secret, and SecretBox: authenticated encryption of small secrets at rest.

Every use of `Settings.secret_key` goes through `derive_key` with its own label, so the JWT key,
the at-rest encryption key and any future key are independent even though one secret is configured.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.errors import LinkRiftError

_SECRETBOX_LABEL = "linkrift/secretbox/v1"


class DecryptionFailed(LinkRiftError):
    """A stored ciphertext was tampered with, truncated, or sealed under a key we no longer hold."""

    code = "decryption_failed"


def derive_key(secret_key: str, label: str, length: int = 32) -> bytes:
    """HKDF-SHA256 of the app secret with a fixed per-purpose `info` label (no salt: the input is a key)."""
    if not secret_key:
        raise ValueError("secret_key must not be empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label.encode())
    return hkdf.derive(secret_key.encode())


def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(secret_key, _SECRETBOX_LABEL)))


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from the app secret.

    Rotation: construct with the new secret first and the retired ones in `old_secret_keys`;
    `decrypt` accepts any of them, `encrypt` always uses the newest, `rotate` re-seals a value.
    """

    def __init__(self, secret_key: str, old_secret_keys: Sequence[str] = ()) -> None:
        self._box = MultiFernet([_fernet(secret_key), *(_fernet(k) for k in old_secret_keys)])

    def encrypt(self, plaintext: str) -> str:
        return self._box.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._box.decrypt(ciphertext.encode()).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise DecryptionFailed(
                "stored secret could not be decrypted: tampered, or sealed with an unknown secret key"
            ) from exc

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key (for a background re-keying pass after a secret change)."""
        try:
            return self._box.rotate(ciphertext.encode()).decode("ascii")
        except (InvalidToken, UnicodeError) as exc:
            raise DecryptionFailed("stored secret could not be decrypted for rotation") from exc
