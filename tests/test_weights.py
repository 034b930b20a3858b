"""Official weights (backend/weights.py): offline message, verification, registry, resume, Drive's page.

Nothing here touches the internet. The "network" is a stdlib HTTP server on loopback serving official-
format files made here (``export_official`` of official-size nets), or a closed loopback port.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from backend import weights
from backend.cli import main as cli_main
from backend.errors import InputError, NotAvailableError
from backend.models import PIFu
from backend.models.checkpoint import export_official
from backend.models.config import ModelConfig
from backend.recon.analytic import body_image
from tests.helpers.models import silhouette_pifu
from tests.helpers.tiny_models import compact_config


@pytest.fixture(scope="module")
def official_files(tmp_path_factory) -> dict[str, bytes]:
    """net_G and net_C in the released layout (official sizes, GroupNorm colour net), as bytes; the
    geometry MLP is set to the analytic body's silhouette so that a reconstruction finds a surface."""
    model = silhouette_pifu(body_image(200), config=ModelConfig.official())
    paths = export_official(model, tmp_path_factory.mktemp("official"))
    return {"net_G": paths["net_G"].read_bytes(), "net_C": paths["net_C"].read_bytes()}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens there once the socket is closed


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves ``files`` under /pifu/NAME with Range support; can cut the first transfer of one file short
    and answer the first request of another with a Google Drive style confirmation page."""

    def __init__(self, files: dict[str, bytes], cut: str | None = None, confirm: str | None = None):
        self.files, self.cut, self.confirm = files, cut, confirm
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path, _, query = self.path.partition("?")
                name = path.rsplit("/", 1)[-1]
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files[name]
                if name == outer.confirm and "confirm=t" not in query:
                    outer.confirm = None
                    page = (f'<html><form id="download-form" action="/pifu/{name}" method="get">'
                            '<input type="hidden" name="id" value="abc">'
                            '<input type="hidden" name="confirm" value="t"></form></html>').encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if name == outer.cut:
                    outer.cut = None
                    self.wfile.write(data[start:start + len(data) // 3])
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_links_are_the_official_ones_and_the_folder_is_documented(monkeypatch, tmp_path):
    monkeypatch.delenv("AVATEX_WEIGHTS_MIRROR", raising=False)
    assert weights.urls("pifu") == {
        "net_G": "https://drive.google.com/uc?export=download&id=1zEmVXG2VHy0MMzngcRshB4D8Sr_oLHsm",
        "net_C": "https://drive.google.com/uc?export=download&id=1V83B6GDIjYMfHdpg-KcCSAPgHxpafHgd"}
    assert weights.urls("pifuhd") == {"pifuhd.pt": "https://dl.fbaipublicfiles.com/pifuhd/checkpoints/pifuhd.pt"}
    monkeypatch.setenv("AVATEX_WEIGHTS", str(tmp_path / "w"))
    assert weights.weights_dir() == tmp_path / "w"
    monkeypatch.delenv("AVATEX_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert weights.weights_dir() == tmp_path / "cache" / "avatex" / "weights"
    with pytest.raises(InputError, match="unknown weights"):
        weights.urls("nope")


def test_offline_fetch_is_one_line_naming_the_urls_and_the_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AVATEX_WEIGHTS_MIRROR", f"http://127.0.0.1:{closed_port()}/mirror")
    assert cli_main(["weights", "fetch", "pifu", "--dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "cannot download the pifu weights" in err
    for name in ("net_G", "net_C"):
        assert f"/mirror/pifu/{name} -> {tmp_path / 'pifu' / name}" in err
    assert not (tmp_path / "registry.json").exists() and not (tmp_path / "pifu" / "net_G").exists()
    with pytest.raises(NotAvailableError, match="weights fetch pifu"):
        weights.installed("pifu", tmp_path)


@pytest.mark.slow
def test_files_placed_by_hand_are_verified_recorded_listed_and_used(official_files, monkeypatch, tmp_path,
                                                                    capsys):
    monkeypatch.setenv("AVATEX_WEIGHTS_MIRROR", f"http://127.0.0.1:{closed_port()}")   # no download happens
    folder = tmp_path / "weights"
    (folder / "pifu").mkdir(parents=True)
    for name, data in official_files.items():
        (folder / "pifu" / name).write_bytes(data)
    assert cli_main(["weights", "fetch", "pifu", "--dir", str(folder), "--no-progress"]) == 0
    assert "strict load into PIFu" in capsys.readouterr().out
    entry = json.loads((folder / "registry.json").read_text())["pifu"]
    for name, data in official_files.items():
        assert entry["files"][name]["size"] == len(data) and entry["files"][name]["sha256"] == sha(data)
    assert cli_main(["weights", "list", "--dir", str(folder)]) == 0
    listing = capsys.readouterr().out
    assert "pifu " in listing and "net_G, net_C" in listing and "pifuhd  not fetched" in listing

    image = tmp_path / "body.png"
    from PIL import Image

    Image.fromarray(body_image(200)).save(image)
    monkeypatch.setenv("AVATEX_WEIGHTS", str(folder))
    out = tmp_path / "out.ply"
    assert cli_main(["reconstruct", str(image), "--weights", "pifu", "--out", str(out), "--resolution", "32",
                     "--device", "cpu", "--no-progress"]) == 0
    assert out.stat().st_size > 0 and "wrote" in capsys.readouterr().out


def test_wrong_files_placed_by_hand_are_refused_and_kept(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AVATEX_WEIGHTS_MIRROR", f"http://127.0.0.1:{closed_port()}")
    paths = export_official(PIFu(compact_config(upsample="nearest")), tmp_path / "tiny")
    folder = tmp_path / "weights" / "pifu"
    folder.mkdir(parents=True)
    for name in ("net_G", "net_C"):
        (folder / name).write_bytes(paths[name].read_bytes())
    assert cli_main(["weights", "fetch", "pifu", "--dir", str(folder.parent), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the pifu weights do not load" in err and "expected [64], got [16]" in err
    assert (folder / "net_G").is_file() and not (folder.parent / "registry.json").exists()


@pytest.mark.slow
def test_download_resumes_with_range_and_answers_the_drive_page(official_files, monkeypatch, tmp_path):
    folder = tmp_path / "weights"
    with Server(official_files, cut="net_G", confirm="net_C") as server:
        monkeypatch.setenv("AVATEX_WEIGHTS_MIRROR", server.url)
        with pytest.raises(NotAvailableError, match="is kept and resumed next time"):
            weights.fetch("pifu", folder)
        part = folder / "pifu" / "net_G.part"
        have = part.stat().st_size
        assert have == len(official_files["net_G"]) // 3
        assert not (folder / "pifu" / "net_G").exists()   # nothing under the final name until verified

        entry = weights.fetch("pifu", folder)
        assert ("/pifu/net_G", f"bytes={have}-") in server.requests   # resumed, not restarted
        assert any("confirm=t" in path for path, _ in server.requests)   # the confirmation was followed
    for name, data in official_files.items():
        assert (folder / "pifu" / name).read_bytes() == data
        assert entry["files"][name]["sha256"] == sha(data)
    assert not part.exists() and entry["verified"].startswith("strict load")
    assert weights.installed("pifu", folder) == {n: folder / "pifu" / n for n in ("net_G", "net_C")}


def test_pifuhd_verification_is_pluggable(monkeypatch, tmp_path):
    monkeypatch.setenv("AVATEX_WEIGHTS_MIRROR", f"http://127.0.0.1:{closed_port()}")
    (tmp_path / "pifuhd").mkdir()
    (tmp_path / "pifuhd" / "pifuhd.pt").write_bytes(b"\x00" * 10)
    seen: list[Path] = []

    def verify(paths: dict[str, Path]) -> str:
        seen.append(paths["pifuhd.pt"])
        raise InputError("not a PIFuHD checkpoint")

    monkeypatch.setitem(weights.VERIFIERS, "pifuhd", verify)
    with pytest.raises(InputError, match="not a PIFuHD checkpoint"):
        weights.fetch("pifuhd", tmp_path)
    assert seen == [tmp_path / "pifuhd" / "pifuhd.pt"]
    monkeypatch.setitem(weights.VERIFIERS, "pifuhd", lambda paths: "checked")
    assert weights.fetch("pifuhd", tmp_path)["verified"] == "checked"
    with pytest.raises(ValueError):
        weights.register_verifier("nope", verify)
