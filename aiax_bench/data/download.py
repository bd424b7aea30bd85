"""Checksum-verified, resumable downloads of packaged dataset stores, with mirrors.

An archive is a zip of a store directory (``<profile>.zarr/...``) stored
without re-compression (the chunks are compressed already). It is fetched
with pooch, which checks its sha256; transfers cut off half-way resume from
where they stopped (HTTP ``Range``). Mirrors are tried in the registry's
order. Every file written lives under the cache directory.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from aiax_bench.errors import AiaxError, StoreError

__all__ = ["DownloadError", "ResumableDownloader", "fetch_archive", "safe_extract", "sha256_file"]

CHUNK_SIZE = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks of 1 MiB."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


class DownloadError(AiaxError):
    """No mirror delivered a verified archive."""


class ResumableDownloader:
    """A pooch downloader that continues an interrupted transfer.

    Bytes are streamed into ``partial``, which survives failures; the next
    attempt asks the server for the rest with ``Range: bytes=N-``. A server
    that ignores the range (status 200) restarts the file from scratch.

    Parameters
    ----------
    partial : Path
        The persistent partial file (inside the cache directory).
    timeout : float
        Seconds to wait for the server to answer or send more data.
    progressbar : bool
        Show a tqdm bar on stderr.
    """

    def __init__(self, partial: Path, *, timeout: float = 20.0, progressbar: bool = True) -> None:
        self.partial = partial
        self.timeout = timeout
        self.progressbar = progressbar

    def __call__(self, url: str, output_file: str, pooch: Any = None, check_only: bool = False) -> bool | None:
        import requests
        from tqdm.auto import tqdm

        if check_only:
            return requests.head(url, timeout=self.timeout, allow_redirects=True).ok
        have = self.partial.stat().st_size if self.partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416:  # we already hold the whole file
                response.close()
            else:
                response.raise_for_status()
                mode = "ab" if response.status_code == 206 and have else "wb"
                if mode == "wb":
                    have = 0
                total = int(response.headers.get("content-length", 0)) + have
                with open(self.partial, mode) as fh, tqdm(total=total or None, initial=have, unit="B",
                                                           unit_scale=True, disable=not self.progressbar,
                                                           desc=Path(url).name, file=sys.stderr) as bar:
                    for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
                        fh.write(chunk)
                        bar.update(len(chunk))
                if total and self.partial.stat().st_size != total:
                    raise OSError(f"transfer ended at {self.partial.stat().st_size} of {total} bytes")
        shutil.copyfile(self.partial, output_file)
        return None


def fetch_archive(urls: list[str], *, sha256: str, fname: str, directory: Path, progressbar: bool = True,
                  attempts: int = 3) -> Path:
    """Download ``fname`` from the first of ``urls`` that delivers it with the right sha256.

    Each URL gets ``attempts`` tries; a try that breaks off leaves its bytes in
    ``<fname>.part`` and the next try resumes from there.

    Raises
    ------
    DownloadError
        When every URL fails; the message lists why each one did.
    StoreError
        When an archive arrives but its sha256 differs (it is deleted, not kept).
    """
    import pooch

    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{fname}.part"
    failures = []
    for url in [u for u in urls for _ in range(attempts)]:
        try:
            path = pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=fname, path=directory,
                                  downloader=ResumableDownloader(partial, progressbar=progressbar))
        except ValueError as exc:
            partial.unlink(missing_ok=True)
            if "hash" in str(exc).lower():
                actual = pooch.file_hash(str(directory / fname)) if (directory / fname).exists() else None
                (directory / fname).unlink(missing_ok=True)
                raise StoreError(url, f"archive sha256 mismatch: expected {sha256}, got "
                                 f"{actual or _hash_in(str(exc), sha256)}; the file was deleted",
                                 "the mirror serves a damaged or tampered file: try again later or "
                                 "rebuild with `aiax-bench datasets build`") from None
            failures.append(f"{url}: {exc}")
            continue
        except Exception as exc:  # network errors come in many types
            reason = f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
            if reason not in failures:
                failures.append(reason)
            continue
        partial.unlink(missing_ok=True)
        return Path(path)
    raise DownloadError("no mirror delivered the archive (" + "; ".join(failures) + ")")


def _hash_in(message: str, expected: str) -> str:
    import re

    found = [h for h in re.findall(r"[0-9a-f]{64}", message) if h != expected]
    return found[0] if found else "a different hash"


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def safe_extract(archive: Path, destination: Path) -> list[str]:
    """Extract ``archive`` into ``destination``, refusing any member that would land outside it.

    Absolute paths, ``..`` components and symbolic links are refused before
    anything is written.
    """
    root = destination.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            name = PurePosixPath(info.filename)
            target = (root / name).resolve()
            if name.is_absolute() or ".." in name.parts or _is_symlink(info) or not (
                    target == root or root in target.parents):
                raise StoreError(archive, f"archive member {info.filename!r} would be written outside "
                                 f"{destination}", "the archive is unsafe and was not extracted")
        destination.mkdir(parents=True, exist_ok=True)
        zf.extractall(root)
    return [m.filename for m in members]


def install_archive(archive: Path, target: Path, *, check) -> None:
    """Extract an archive holding ``<target.name>/`` and move the store to ``target`` atomically.

    ``check(path)`` validates the extracted store before it is moved into place.
    """
    staging = target.parent / f".{target.name}.extract-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        safe_extract(archive, staging)
        extracted = staging / target.name
        if not extracted.is_dir():
            raise StoreError(archive, f"archive holds no {target.name}/ directory",
                             "package stores with `aiax-bench datasets package`")
        check(extracted)
        if target.exists():
            shutil.rmtree(target)
        os.replace(extracted, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
