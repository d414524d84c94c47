import hashlib
import http.server
import io
import tarfile
import threading
from typing import ClassVar

import pytest

from octattn.cli import main
from octattn.data.download import download_file, unpack
from octattn.errors import DataError
from tests.data.helpers import make_tree


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one archive from memory, honouring ``Range: bytes=N-``."""

    payload = b""
    requests: ClassVar[list[str | None]] = []

    def do_GET(self):
        range_header = self.headers.get("Range")
        RangeHandler.requests.append(range_header)
        if self.path != "/OCT2017.tar.gz":
            self.send_error(404)
            return
        start = int(range_header.split("=")[1].rstrip("-")) if range_header else 0
        body = self.payload[start:]
        self.send_response(206 if range_header else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    make_tree(tmp_path / "src" / "OCT2017 ", {"train": {"CNV": ["CNV-1-1.jpeg"]}, "test": {"CNV": ["CNV-1-2.jpeg"]}})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "OCT2017 ", arcname="OCT2017 ")
    RangeHandler.payload = buffer.getvalue()
    RangeHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_resume_and_checksum(server, tmp_path):
    payload = RangeHandler.payload
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "OCT2017.tar.gz"
    dest.parent.mkdir()
    (dest.parent / "OCT2017.tar.gz.part").write_bytes(payload[:100])
    assert download_file(f"{server}/OCT2017.tar.gz", dest, digest, progress=False) == digest
    assert RangeHandler.requests == ["bytes=100-"]
    assert dest.read_bytes() == payload


def test_wrong_checksum_removes_the_download(server, tmp_path):
    dest = tmp_path / "OCT2017.tar.gz"
    with pytest.raises(DataError, match="does not match"):
        download_file(f"{server}/OCT2017.tar.gz", dest, "0" * 64, progress=False)
    assert not dest.exists()


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download_file(f"{server}/missing.tar.gz", tmp_path / "x.tar.gz", progress=False)


def test_cli_downloads_unpacks_and_audits(server, tmp_path, capsys):
    code = main(["data", "download", "kermany", str(tmp_path / "k"), "--url", f"{server}/OCT2017.tar.gz"])
    out = capsys.readouterr().out
    assert code == 0
    assert "data set ready at" in out and "OCT2017 " in out
    assert "patients in more than one split: 1" in out
    assert (tmp_path / "k" / "OCT2017.tar.gz.sha256").exists()


def test_unpack_refuses_escaping_members(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
