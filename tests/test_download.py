"""Downloads against a real HTTP server on 127.0.0.1: verify, tamper, resume, mirrors, safe extraction."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest
from _http import ArchiveServer

from aiax_bench.data import loader
from aiax_bench.data.download import DownloadError, fetch_archive, safe_extract
from aiax_bench.data.package import package_store
from aiax_bench.errors import StoreError


@pytest.fixture(scope="module")
def packaged(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    info = package_store(tiny_dataset.path, out)
    info["bytes"] = Path(info["archive"]).read_bytes()
    return info


@pytest.fixture
def server():
    with ArchiveServer() as srv:
        yield srv


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/foam-1.0-tiny.zip"


def publish(monkeypatch, tiny_dataset, packaged, urls, tmp_path):
    """Make the registry say foam@1.0 tiny is published at ``urls``."""
    fingerprint = tmp_path / "published-fingerprint.json"
    fingerprint.write_text(json.dumps(packaged["fingerprint"]))
    archive = {"sha256": packaged["sha256"], "size": packaged["size"],
               "content_sha256": packaged["content_sha256"], "fingerprint": str(fingerprint), "urls": urls}
    spec = dataclasses.replace(tiny_dataset.spec, archives={"tiny": archive})
    monkeypatch.setattr(loader, "resolve", lambda ref: spec)
    monkeypatch.setattr(type(spec), "fingerprint", lambda self, profile: packaged["fingerprint"])


def all_files(*roots: Path) -> set[Path]:
    return {p for r in roots for p in r.rglob("*") if p.is_file()}


def test_download_verifies_and_installs(server, packaged, tiny_dataset, monkeypatch, tmp_path):
    server.files["/foam-1.0-tiny.zip"] = packaged["bytes"]
    publish(monkeypatch, tiny_dataset, packaged, [f"{server.url}/foam-1.0-tiny.zip"], tmp_path)
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ds = loader.load("foam@1.0", profile="tiny", root=cache)
    assert ds.source == "downloaded"
    assert ds.content_sha256 == tiny_dataset.content_sha256
    sample = ds.split("100proj").test[0]
    assert sample.read("low").shape == (64, 64, 64)
    # Nothing written outside the cache directory, and no download left behind.
    assert all_files(work) == set()
    assert not any(p.suffix in {".zip", ".part"} for p in all_files(cache))


def test_tampered_archive_is_rejected_and_deleted(server, packaged, tiny_dataset, monkeypatch, tmp_path):
    tampered = bytearray(packaged["bytes"])
    tampered[len(tampered) // 2] ^= 0xFF
    server.files["/foam-1.0-tiny.zip"] = bytes(tampered)
    publish(monkeypatch, tiny_dataset, packaged, [f"{server.url}/foam-1.0-tiny.zip"], tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(StoreError) as info:
        loader.load("foam@1.0", profile="tiny", root=cache)
    message = str(info.value)
    import hashlib

    assert packaged["sha256"] in message
    assert hashlib.sha256(bytes(tampered)).hexdigest() in message
    assert not (cache / "foam" / "1.0" / "tiny.zarr").exists()
    assert not any(p.suffix in {".zip", ".part"} for p in all_files(cache))


def test_interrupted_download_resumes(server, packaged, tmp_path):
    server.files["/a.zip"] = packaged["bytes"]
    half = len(packaged["bytes"]) // 2
    server.cut_after["/a.zip"] = half
    path = fetch_archive([f"{server.url}/a.zip"], sha256=packaged["sha256"], fname="a.zip",
                         directory=tmp_path, progressbar=False)
    assert path.read_bytes() == packaged["bytes"]
    ranges = [r for p, r in server.requests if p == "/a.zip"]
    # The second request continues from what the first delivered (whole chunks of it).
    assert ranges[0] is None and ranges[1] is not None
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= half
    assert not (tmp_path / "a.zip.part").exists()


def test_unreachable_primary_falls_back_to_mirror(server, packaged, tiny_dataset, monkeypatch, tmp_path):
    server.files["/mirror/foam-1.0-tiny.zip"] = packaged["bytes"]
    urls = [closed_port_url(), f"{server.url}/missing.zip", f"{server.url}/mirror/foam-1.0-tiny.zip"]
    publish(monkeypatch, tiny_dataset, packaged, urls, tmp_path)
    ds = loader.load("foam@1.0", profile="tiny", root=tmp_path / "cache")
    assert ds.source == "downloaded"
    assert ("/mirror/foam-1.0-tiny.zip", None) in server.requests


def test_no_mirror_reports_every_failure(tmp_path):
    with pytest.raises(DownloadError, match="no mirror delivered") as info:
        fetch_archive([closed_port_url()], sha256="0" * 64, fname="x.zip", directory=tmp_path,
                      progressbar=False, attempts=1)
    assert "127.0.0.1" in str(info.value)


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "tiny.zarr/../../evil.txt"])
def test_archive_escaping_target_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny.zarr/zarr.json", "{}")
        zf.writestr(member, "pwned")
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(StoreError, match="would be written outside"):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dest" / "evil.txt").exists()
