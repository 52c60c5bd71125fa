"""The Ed25519 key that signs the audit log's checkpoints: load it, derive its public half.

The private key is the daemon's alone and never lives in the state directory:
a process that can write the state directory must not also be able to sign,
or it could rewrite the log and its checkpoints together. Under systemd the
unit hands it over with ``LoadCredential=`` (readable by the service only,
under ``$CREDENTIALS_DIRECTORY``). The public key can be derived from the
private one and is all a verifier needs, so it can be given to auditors.

Key files are PEM (PKCS#8 private keys and SubjectPublicKeyInfo public keys,
as ``openssl genpkey -algorithm ed25519`` and :func:`generate_keypair` write
them) or the raw 32 bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import AnchorError

PRIVATE_KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
CREDENTIAL_NAME = "audit-signing-key"  # the name in the unit's LoadCredential=
_RAW_SIZE = 32


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The signing key in ``path`` (PEM or raw 32 bytes); AnchorError saying what is wrong."""
    data = _read(path, "signing key")
    if len(data) == _RAW_SIZE:
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise AnchorError(f"{path}: the signing key is password-protected; give selfmod an "
                          "unencrypted key and protect the file instead (mode 0600, or "
                          "systemd's LoadCredential=)") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AnchorError(f"{path}: not a PEM private key or 32 raw bytes ({exc}); make one "
                          "with `selfmod audit keygen --out DIR`") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AnchorError(f"{path}: a {type(key).__name__}, but audit checkpoints are signed "
                          "with Ed25519; make a key with `selfmod audit keygen --out DIR`")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The verifying key in ``path``: public PEM, raw 32 bytes, or a private PEM to derive it."""
    data = _read(path, "public key")
    if len(data) == _RAW_SIZE:
        return Ed25519PublicKey.from_public_bytes(data)
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AnchorError(f"{path}: not a PEM public key or 32 raw bytes ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AnchorError(f"{path}: a {type(key).__name__}, not an Ed25519 public key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of ``key`` (16 hex digits of the sha256 of its raw bytes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new key pair into ``out_dir`` (private 0600, public 0644); never overwrite."""
    private, public = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, data, mode in ((private, private_pem, 0o600), (public, public_pem, 0o644)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    except FileExistsError as exc:
        raise AnchorError(f"{exc.filename} exists; keys are never overwritten (a lost signing "
                          "key cannot vouch for old checkpoints): choose another --out") from exc
    except OSError as exc:
        raise AnchorError(f"cannot write a key pair into {out_dir}: {exc}") from exc
    return private, public


def credential_key_path(environ: Mapping[str, str]) -> Path | None:
    """The signing key systemd handed over with ``LoadCredential=audit-signing-key:…``, if any."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / CREDENTIAL_NAME
    return path if path.is_file() else None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AnchorError(f"cannot read the audit {what} {path}: {exc}") from exc
