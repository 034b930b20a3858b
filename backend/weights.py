"""The released weights: fetched once into a user folder, verified by loading, recorded with size and sha256.

Where: ``$AVATEX_WEIGHTS``, else ``$XDG_CACHE_HOME/avatex/weights`` (``~/.cache/avatex/weights``); one
sub-folder per release (``pifu/net_G``, ``pifu/net_C``, ``pifuhd/pifuhd.pt``) and ``registry.json``
beside them. The download links are those of the official repositories'
``scripts/download_trained_model.sh``; ``$AVATEX_WEIGHTS_MIRROR`` (a base URL) fetches
``MIRROR/<release>/<file>`` instead, for a local mirror.

A download goes to ``<file>.part`` and resumes from its size (HTTP Range) when run again; Google Drive's
"cannot scan this file for viruses" page is answered like a browser would. Only when every file of a
release is complete *and* loads strictly into the project's nets are the files moved into place
(``os.replace``) and recorded, so a file under its final name is always a verified one. Files put into
the folder by hand are verified and recorded the same way by ``avatex weights fetch`` (docs/api.md,
"Official weights").
"""

from __future__ import annotations

import hashlib
import html
import http.client
import http.cookiejar
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avatex_core.atomic import write_json
from backend.errors import InputError, NotAvailableError

REGISTRY = "registry.json"
CHUNK = 1 << 20
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Release:
    """A set of released files and where they come from."""

    name: str
    files: dict[str, str]          # file name -> download URL
    source: str                    # where the links are published, for the messages
    what: str


RELEASES: dict[str, Release] = {
    "pifu": Release(
        "pifu",
        {"net_G": "https://drive.google.com/uc?export=download&id=1zEmVXG2VHy0MMzngcRshB4D8Sr_oLHsm",
         "net_C": "https://drive.google.com/uc?export=download&id=1V83B6GDIjYMfHdpg-KcCSAPgHxpafHgd"},
        "github.com/shunsukesaito/PIFu scripts/download_trained_model.sh",
        "PIFu (Saito et al. 2019): surface net net_G and colour net net_C"),
    "pifuhd": Release(
        "pifuhd",
        {"pifuhd.pt": "https://dl.fbaipublicfiles.com/pifuhd/checkpoints/pifuhd.pt"},
        "github.com/facebookresearch/pifuhd scripts/download_trained_model.sh",
        "PIFuHD (Saito et al. 2020): coarse and fine surface nets in one file"),
}

Verifier = Callable[[dict[str, Path]], str]
"""Loads a release's files (name -> path) strictly; returns what they loaded into, raises InputError."""


def _verify_pifu(paths: dict[str, Path]) -> str:
    from backend.models.checkpoint import load_official

    model = load_official(paths["net_G"], paths["net_C"], device="cpu")
    return f"strict load into PIFu (official options, colour norm {model.config.norm_color})"


def _verify_pifuhd(paths: dict[str, Path]) -> str:
    from backend.models.pifuhd import verify_pifuhd

    summary = verify_pifuhd(paths["pifuhd.pt"])
    return (f"strict load into PIFuHD ({summary['parameters']:,} parameters, normal nets "
            f"{'/'.join(summary['normal_nets']) or 'none'}, {summary['fine_size']}² fine level)")


VERIFIERS: dict[str, Verifier] = {"pifu": _verify_pifu, "pifuhd": _verify_pifuhd}


def register_verifier(release: str, verifier: Verifier) -> None:
    """Plug in the strict loader of a release (the PIFuHD one lives with its model code)."""
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}")
    VERIFIERS[release] = verifier


def weights_dir(folder: str | Path | None = None) -> Path:
    """The weights folder: ``folder``, else ``$AVATEX_WEIGHTS``, else the user cache (module docstring)."""
    if folder is not None:
        return Path(folder).expanduser().absolute()
    if os.environ.get("AVATEX_WEIGHTS"):
        return Path(os.environ["AVATEX_WEIGHTS"]).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser().absolute() / "avatex" / "weights"


def release(name: str) -> Release:
    if name not in RELEASES:
        raise InputError(f"unknown weights {name!r}; known: {', '.join(RELEASES)}")
    return RELEASES[name]


def urls(name: str) -> dict[str, str]:
    """Download URL per file of release ``name`` (the mirror's when ``$AVATEX_WEIGHTS_MIRROR`` is set)."""
    rel = release(name)
    mirror = os.environ.get("AVATEX_WEIGHTS_MIRROR", "").rstrip("/")
    if mirror:
        return {f: f"{mirror}/{rel.name}/{f}" for f in rel.files}
    return dict(rel.files)


def read_registry(folder: str | Path | None = None) -> dict[str, Any]:
    """``registry.json`` of the weights folder ({} when there is none yet)."""
    import json

    path = weights_dir(folder) / REGISTRY
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"weights registry {path} is unreadable ({exc}); delete it and fetch "
                         "again") from None
    return data if isinstance(data, dict) else {}


def installed(name: str, folder: str | Path | None = None) -> dict[str, Path]:
    """The files of release ``name`` (name -> path); :class:`NotAvailableError` says how to get them."""
    rel = release(name)
    base = weights_dir(folder) / rel.name
    paths = {f: base / f for f in rel.files}
    missing = [f for f, p in paths.items() if not p.is_file()]
    if missing:
        raise NotAvailableError(f"the {name} weights are not in {base} (missing {', '.join(missing)}); "
                                f"run `avatex weights fetch {name}`")
    return paths


def fetch(name: str, folder: str | Path | None = None, *, progress: Callable[[str, int, int | None], None]
          | None = None) -> dict[str, Any]:
    """Download (or resume), verify and record release ``name``; returns its registry entry.

    Files already in place are not downloaded again, only verified and recorded.
    """
    rel = release(name)
    base = weights_dir(folder) / rel.name
    base.mkdir(parents=True, exist_ok=True)
    links = urls(name)
    ready: dict[str, Path] = {}
    for file_name, url in links.items():
        final = base / file_name
        if final.is_file():
            ready[file_name] = final
            continue
        part = base / f"{file_name}.part"
        try:
            _download(url, part, lambda done, total, f=file_name: progress and progress(f, done, total))
        except (OSError, http.client.HTTPException) as exc:   # offline, refused, timed out, cut off
            raise NotAvailableError(_offline_message(name, base, links, exc, part)) from None
        ready[file_name] = part
    verifier = VERIFIERS.get(name)
    try:
        verified = verifier(ready) if verifier is not None else None
    except InputError as exc:
        parts = [p for p in ready.values() if p.suffix == ".part"]
        for path in parts:   # complete but wrong: resuming them would never make them right
            path.unlink()
        placed = [str(p) for p in ready.values() if p.suffix != ".part"]
        what = "; the downloaded parts were removed" if parts else ""
        what += f"; replace {', '.join(placed)}" if placed else ""
        raise InputError(f"the {name} weights do not load ({exc}){what}") from None
    entry = {"release": name, "source": rel.source, "folder": str(base),
             "verified": verified or "not verified: no loader for this release is installed",
             "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": {}}
    for file_name, path in ready.items():
        final = base / file_name
        if path != final:
            os.replace(path, final)
        entry["files"][file_name] = {"size": final.stat().st_size, "sha256": _sha256(final),
                                     "url": links[file_name]}
    registry = read_registry(folder)
    registry[name] = entry
    write_json(weights_dir(folder) / REGISTRY, registry)
    return entry


def _offline_message(name: str, base: Path, links: dict[str, str], exc: BaseException, part: Path) -> str:
    reason = getattr(exc, "reason", None) or exc
    kept = f"; {part.name} ({part.stat().st_size} bytes) is kept and resumed next time" if (
        part.is_file() and part.stat().st_size) else ""
    by_hand = ", ".join(f"{url} -> {base / f}" for f, url in links.items())
    return (f"cannot download the {name} weights ({reason}){kept}. By hand: save {by_hand}, then run "
            f"`avatex weights fetch {name}` to verify them")


def _opener() -> urllib.request.OpenerDirector:
    # Google Drive sets its download-warning cookie on the first answer and wants it back.
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _download(url: str, part: Path, progress: Callable[[int, int | None], Any]) -> None:
    """Fetch ``url`` into ``part``, appending from its current size when the server honours Range."""
    opener = _opener()
    for _ in range(3):   # the file, or a confirmation page that names the file's real address
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "avatex"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = opener.open(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:   # the part is already the whole file
                return
            raise
        with response:
            if "text/html" in response.headers.get("Content-Type", ""):
                page = response.read(1 << 20).decode("utf-8", "replace")
                url = _confirmation_url(page, url)
                continue
            if have and response.status != 206:
                have = 0   # the server ignored Range: start again
            total = response.headers.get("Content-Length")
            total_n = None if total is None else int(total) + have
            with open(part, "ab" if have else "wb") as out:
                done = have
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    progress(done, total_n)
                out.flush()
                os.fsync(out.fileno())
            if total_n is not None and done < total_n:
                raise ConnectionError(f"transfer stopped at {done} of {total_n} bytes")
            return
    raise InputError(f"{url} keeps answering with a web page instead of the file")


def _confirmation_url(page: str, url: str) -> str:
    """The download address on Google Drive's confirmation page (its form, or a ``confirm=`` link)."""
    form = re.search(r'<form[^>]*id="download-form"[^>]*action="([^"]+)"(.*?)</form>', page, re.S)
    if form:
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form.group(2)))
        action = urllib.parse.urljoin(url, html.unescape(form.group(1)))
        return f"{action}?{urllib.parse.urlencode(fields)}"
    link = re.search(r'href="([^"]*confirm=[^"]+)"', page)
    if link:
        return urllib.parse.urljoin(url, html.unescape(link.group(1)))
    raise InputError(f"{url} answered with a web page that is not a download confirmation "
                     "(the link may have moved)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pifuhd_checkpoint(folder: str | Path | None = None) -> Path:
    """The fetched ``pifuhd.pt``, the PIFuHD default; torch-free, so the server can check it on its socket
    loop. :class:`NotAvailableError` says how to get it."""
    try:
        return installed("pifuhd", folder)["pifuhd.pt"]
    except NotAvailableError as exc:
        raise NotAvailableError(f"no PIFuHD weights: give --checkpoint PATH, or {exc}") from None
