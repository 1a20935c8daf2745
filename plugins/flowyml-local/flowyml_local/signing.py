"""Signatures that decide whether a pickle may be loaded.

Unpickling runs code chosen by whoever wrote the bytes. A store therefore loads
a pickle-format object (or any materializer marked ``unsafe``) only when its
header carries an HMAC-SHA256 made with the stack's signing key, or when the
store was told explicitly to trust unsigned pickles (``allow_unsigned_pickle``).

The key is the store's ``signing_key`` option (typically
``"${env:FLOWYML_SIGNING_KEY}"`` so that every machine of a team or every
container of a remote run shares it). When it is not set, a per-user key is
created on first use at ``$XDG_CONFIG_HOME/flowyml/signing.key`` (mode 0600):
the default local stack then works out of the box, and a pickle planted by
someone else — who cannot read that file — is refused.

What is signed is the payload's digest (BLAKE3 for these formats, a
cryptographic hash: see :mod:`flowyml_local.digests`) plus the materializer name and size, not the
payload itself: the store verifies the digest of the bytes anyway, so signing a
100 MB pickle costs one HMAC over a few dozen bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from pathlib import Path

from flowyml_core.errors import ConfigError

logger = logging.getLogger("flowyml.stores.signing")

SIGNATURE_PREFIX = "hmac-sha256:"
KEY_ENV_HINT = "${env:FLOWYML_SIGNING_KEY}"

_cache: dict[str, "Signer"] = {}
_lock = threading.Lock()


class Signer:
    """Signs and checks payload digests with one key.

    ``source`` says where the key came from, for messages (never the key).
    """

    __slots__ = ("_key", "source")

    def __init__(self, key: bytes, source: str) -> None:
        if not key:
            raise ConfigError(f"signing key from {source} is empty")
        self._key = key
        self.source = source

    def __repr__(self) -> str:
        return f"Signer(source={self.source!r})"

    @staticmethod
    def _message(materializer: str, digest: str, size: int, context: str) -> bytes:
        return f"flowyml-sig-v2\0{materializer}\0{digest}\0{size}\0{context}".encode("utf-8", "surrogatepass")

    def sign(self, materializer: str, digest: str, size: int, context: str = "") -> str:
        """``context`` binds the signature to where the object belongs (a cache key), so it cannot be replayed elsewhere."""
        mac = hmac.new(self._key, self._message(materializer, digest, size, context), hashlib.sha256)
        return SIGNATURE_PREFIX + mac.hexdigest()

    def verify(self, signature: object, materializer: str, digest: str, size: int, context: str = "") -> bool:
        if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
            return False
        return hmac.compare_digest(signature, self.sign(materializer, digest, size, context))


def user_key_path() -> Path:
    """``$XDG_CONFIG_HOME/flowyml/signing.key`` (``~/.config`` when XDG_CONFIG_HOME is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "flowyml" / "signing.key"


def resolve_signer(signing_key: str | None) -> Signer:
    """The signer for a store: its configured key, else the per-user key (created if missing)."""
    if signing_key is not None:
        if signing_key == "":
            raise ConfigError(
                "signing_key is set but empty (an unset environment variable?); "
                f"set it, e.g. signing_key = \"{KEY_ENV_HINT}\" with FLOWYML_SIGNING_KEY exported, or remove the option"
            )
        return Signer(signing_key.encode("utf-8"), "the store's signing_key option")
    path = user_key_path()
    cache_key = str(path)
    signer = _cache.get(cache_key)
    if signer is None:
        with _lock:
            signer = _cache.get(cache_key)
            if signer is None:
                signer = Signer(_load_or_create_user_key(path), f"the per-user key {path}")
                _cache[cache_key] = signer
    return signer


def _load_or_create_user_key(path: Path) -> bytes:
    try:
        return _read_user_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)  # a key that vanishes after a crash would orphan every signature made with it
    finally:
        os.close(fd)
    try:
        # link() publishes the complete file or fails if another process won the race.
        os.link(tmp, path)
        logger.info("created signing key %s (used to sign pickled artifacts and cache entries)", path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return _read_user_key(path)


def _read_user_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            raise ConfigError(
                f"signing key {path} can be read or written by other users (mode {st.st_mode & 0o777:o}); "
                f"anyone who can read it can make pickles this machine will load. Fix with: chmod 600 {path}"
            )
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise ConfigError(
                f"signing key {path} belongs to another user (uid {st.st_uid}); remove it so a new one is created"
            )
        data = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if not data:
        raise ConfigError(f"signing key {path} is empty; delete it so a new one is created")
    return data
