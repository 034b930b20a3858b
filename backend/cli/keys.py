"""avatex keys: make a CurveZMQ key pair for a remote backend or one of its clients.

On the server: `avatex keys --out DIR --name server`, then `avatex serve --bind tcp://0.0.0.0:5555
--keys DIR`. For each client: `avatex keys --out CLIENT_DIR --name alice`, copy CLIENT_DIR/alice.key
into the server's DIR/authorized/, and give the client DIR/server.key. Secret files are written
atomically with mode 0600 and never leave the machine they were made on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "make CurveZMQ key pairs for remote use of the server"
PATHS = ("out",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the key files")
    parser.add_argument("--name", default="server",
                        help="key pair name: NAME.key (public) and NAME.key_secret (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing key pair")


def run(args: argparse.Namespace) -> int:
    from backend.server.keys import AUTHORIZED_DIR, SERVER_NAME, load_key_file, write_keypair

    public_path, secret_path = write_keypair(args.out, args.name, force=args.force)
    public, _ = load_key_file(public_path, secret=False)
    print(f"public key  {public_path}  ({public.decode('ascii')})")
    print(f"secret key  {secret_path}  (mode 0600; keep it on this machine)")
    if args.name == SERVER_NAME:
        print(f"next: put each client's public .key file into {args.out / AUTHORIZED_DIR}/, run "
              f"`avatex serve --keys {args.out} --bind tcp://0.0.0.0:5555`, and give clients {public_path}")
    else:
        print(f"next: copy {public_path} into the server's KEYS/{AUTHORIZED_DIR}/ folder; this client "
              f"needs {secret_path} and the server's server.key")
    return 0
