"""Downloads against a local HTTP server: hash check, cache, resume, bad hash, interruption, offline."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import logging
import socket
import threading

import pytest
import torch
import torchvision

import mnv3
from mnv3.models.testing import randomize_
from mnv3.spec.conventions import Preset
from mnv3.utils.preprocessing import IMAGENET
from mnv3.weights import Checksum, DownloadError, HashAlgorithm, Library, WeightsEntry, fetch


class _Server:
    """Serves bytes on 127.0.0.1 with HTTP Range support; records every request."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests, self.sent = files, [], 0
        self.cut_next = False  # send only half the body once, then drop the connection
        self.ignore_range = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and not outer.ignore_range else 0
                if start >= len(data) and rng:
                    self.send_error(416)
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_next:
                    outer.cut_next = False
                    body = body[: len(body) // 2]
                self.wfile.write(body)
                outer.sent += len(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def payload() -> tuple[bytes, torch.nn.Module]:
    """A real torchvision-format checkpoint (random Small) as the served file."""
    torch.manual_seed(0)
    src = randomize_(torchvision.models.mobilenet_v3_small(), seed=5)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    return buf.getvalue(), src


@pytest.fixture
def server(payload):
    s = _Server({"/w/mnv3_test-small.pth": payload[0]})
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNV3_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _entry(url: str, data: bytes, *, digest: str | None = None) -> WeightsEntry:
    return WeightsEntry(
        name="mobilenetv3_small_100.test",
        model="mobilenetv3_small_100",
        preset=Preset.TORCHVISION,
        library=Library.TORCHVISION,
        source_name="test",
        url=url,
        checksum=Checksum(HashAlgorithm.SHA256, digest or hashlib.sha256(data).hexdigest(), "test server"),
        preprocessing=IMAGENET,
        metrics=(),
        params=2_542_856,
        madds=56_510_400,
        license="test",
    )


def test_download_hash_checked_cached_and_loaded(server, payload, cache, capfd) -> None:
    data, src = payload
    entry = _entry(server.url + "/w/mnv3_test-small.pth", data)
    model = mnv3.create_model("mobilenetv3_small_100", preset="torchvision", weights=entry)
    assert "mnv3_test-small.pth" in capfd.readouterr().err  # the tqdm progress bar
    path = cache / "torchvision" / "mnv3_test-small.pth"
    assert path.read_bytes() == data and not path.with_name(path.name + ".part").exists()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (model.eval()(x) - src(x)).abs().max() <= 1e-4
    assert model.weights_meta.preprocessing == IMAGENET and len(model.weights_meta.categories) == 1000
    # a second use reads the verified cache, no request
    n = len(server.requests)
    assert fetch(entry) == path and len(server.requests) == n


def test_resume_with_range(server, payload, cache) -> None:
    data, _ = payload
    entry = _entry(server.url + "/w/mnv3_test-small.pth", data)
    part = cache / "torchvision" / "mnv3_test-small.pth.part"
    part.parent.mkdir(parents=True)
    half = len(data) // 2
    part.write_bytes(data[:half])
    path = fetch(entry, progress=False)
    assert server.requests == [("/w/mnv3_test-small.pth", f"bytes={half}-")]
    assert server.sent == len(data) - half  # only the rest crossed the wire
    assert path.read_bytes() == data


def test_interrupted_download_resumes_on_the_next_call(server, payload, cache) -> None:
    data, _ = payload
    entry = _entry(server.url + "/w/mnv3_test-small.pth", data)
    server.cut_next = True
    with pytest.raises(DownloadError, match="interrupted.*run again to resume"):
        fetch(entry, progress=False)
    part = cache / "torchvision" / "mnv3_test-small.pth.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    assert fetch(entry, progress=False).read_bytes() == data
    assert server.requests[-1][1] == f"bytes={kept}-"


def test_server_ignoring_range_restarts_cleanly(server, payload, cache) -> None:
    data, _ = payload
    server.ignore_range = True
    part = cache / "torchvision" / "mnv3_test-small.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that must not stay in front")
    assert fetch(_entry(server.url + "/w/mnv3_test-small.pth", data), progress=False).read_bytes() == data


def test_bad_hash_is_deleted_and_never_used(server, payload, cache) -> None:
    data, _ = payload
    entry = _entry(server.url + "/w/mnv3_test-small.pth", data, digest=hashlib.sha256(b"other").hexdigest()[:8])
    model = mnv3.create_model("mobilenetv3_small_100", preset="torchvision")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="does not match the published"):
        mnv3.weights.load_weights_into(model, entry, progress=False)
    folder = cache / "torchvision"
    assert list(folder.iterdir()) == []  # neither the file nor a .part is left
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model untouched


def test_corrupt_cached_file_is_replaced(server, payload, cache, capsys, caplog) -> None:
    data, _ = payload
    entry = _entry(server.url + "/w/mnv3_test-small.pth", data)
    path = cache / "torchvision" / "mnv3_test-small.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:-10])  # e.g. a truncated copy someone put there
    with caplog.at_level(logging.WARNING, logger="mnv3.weights.download"):
        assert fetch(entry, progress=False).read_bytes() == data
    assert [r.levelno for r in caplog.records if "does not match" in r.getMessage()] == [logging.WARNING]
    assert capsys.readouterr().out == ""  # library code logs; it does not print


def test_offline_error_names_url_and_path(cache) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w/mnv3_test-small.pth"
    entry = _entry(url, b"x")
    with pytest.raises(DownloadError) as err:
        fetch(entry, progress=False)
    msg = str(err.value)
    assert url in msg
    assert str(cache / "torchvision" / "mnv3_test-small.pth") in msg
    assert isinstance(err.value, ValueError)  # the CLI reports it as a clean error


def test_md5_checksums_verify(tmp_path) -> None:
    f = tmp_path / "k.h5"
    f.write_bytes(b"keras weights")
    good = Checksum(HashAlgorithm.MD5, hashlib.md5(b"keras weights").hexdigest(), "test")
    assert mnv3.weights.download.verify(f, good) == good.value
    bad = dataclasses.replace(good, value="0" * 32)
    with pytest.raises(ValueError, match="md5"):
        mnv3.weights.download.verify(f, bad)
    assert not f.exists()
