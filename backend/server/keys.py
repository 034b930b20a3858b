"""CurveZMQ key files: making key pairs (``avatex keys``) and loading the server's keys.

Files use ZeroMQ's certificate text format (what ``zmq.auth.load_certificate`` and czmq read):
``NAME.key`` holds the public key, ``NAME.key_secret`` both keys. Both are written atomically; the
secret file is created with mode 0600 (``mkstemp``) and never widened.

A server's key directory (``avatex serve --keys DIR``)::

    DIR/server.key          the server's public key (give it to clients)
    DIR/server.key_secret   the server's key pair (stays on the server)
    DIR/authorized/*.key    public keys of the clients allowed in (the allow-list)
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from avatex_core.atomic import atomic_path
from backend.errors import InputError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_Z85_KEY_RE = re.compile(rb"[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
SERVER_NAME = "server"
AUTHORIZED_DIR = "authorized"


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized_dir: Path
    authorized: tuple[bytes, ...]


def write_keypair(out_dir: str | os.PathLike, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Make a CurveZMQ key pair as ``out_dir/name.key`` and ``out_dir/name.key_secret``."""
    import zmq

    if not _NAME_RE.fullmatch(name or ""):
        raise InputError(f"key name {name!r} must be letters, digits, '_', '.', '-' (no slashes)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    public_path, secret_path = out / f"{name}.key", out / f"{name}.key_secret"
    existing = [str(p) for p in (public_path, secret_path) if p.exists()]
    if existing and not force:
        raise InputError(f"{', '.join(existing)} already exist(s); pass --force to replace the key pair "
                         "(clients or servers that trust the old public key will stop working)")
    public, secret = zmq.curve_keypair()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    _write(secret_path, _certificate(stamp, "**Secret** Certificate — keep private", public, secret),
           mode=0o600)
    _write(public_path, _certificate(stamp, "Public Certificate", public), mode=0o644)
    return public_path, secret_path


def load_key_file(path: str | os.PathLike, *, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) from a certificate file; ``secret=True`` requires the secret key too."""
    import zmq.auth

    path = Path(path)
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read CurveZMQ key file {path}: {exc}") from None
    bad_secret = secret_key is not None and not _Z85_KEY_RE.fullmatch(secret_key)
    if not _Z85_KEY_RE.fullmatch(public) or bad_secret:
        raise InputError(f"{path} does not hold a valid 40-character Z85 CurveZMQ key")
    if secret and secret_key is None:
        raise InputError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret_key


def load_server_keys(keys_dir: str | os.PathLike) -> ServerKeys:
    """The server's key pair and its allow-list, with an error saying how to fix each missing part."""
    keys_dir = Path(keys_dir)
    secret_path = keys_dir / f"{SERVER_NAME}.key_secret"
    if not secret_path.is_file():
        raise InputError(f"--keys {keys_dir}: no {secret_path.name} there; make one with "
                         f"`avatex keys --out {keys_dir} --name {SERVER_NAME}`")
    if secret_path.stat().st_mode & 0o077:
        raise InputError(f"{secret_path} is readable by other users; run `chmod 600 {secret_path}`")
    public, secret = load_key_file(secret_path, secret=True)
    authorized_dir = keys_dir / AUTHORIZED_DIR
    allowed = []
    if authorized_dir.is_dir():
        allowed = [load_key_file(p, secret=False)[0] for p in sorted(authorized_dir.glob("*.key"))]
    if not allowed:
        raise InputError(f"--keys {keys_dir}: no client public keys in {authorized_dir}/ — nobody could "
                         "connect. Make a client key pair with `avatex keys --out CLIENT_DIR --name "
                         f"NAME` and copy CLIENT_DIR/NAME.key into {authorized_dir}/")
    assert secret is not None
    return ServerKeys(public, secret, authorized_dir, tuple(allowed))


def _certificate(stamp: str, kind: str, public: bytes, secret: bytes | None = None) -> str:
    lines = [f"#   ****  Generated on {stamp} by avatex  ****", f"#   ZeroMQ CURVE {kind}", "",
             "metadata", "curve", f'    public-key = "{public.decode("ascii")}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    with atomic_path(path) as tmp:
        os.chmod(tmp, mode)
        tmp.write_text(text, encoding="utf-8")
