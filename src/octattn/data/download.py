"""Fetch the real data set: resumable HTTP download, checksum, safe unpacking.

``octattn data download kermany OUT`` fetches Kermany et al.'s OCT2017 archive from
Mendeley Data (doi:10.17632/rscbjbr9sj, CC BY 4.0; about 5.8 GB). An interrupted
download resumes where it stopped (HTTP Range). Mendeley publishes no checksum for the
archive: the SHA-256 we compute is printed and saved beside the archive, and ``--sha256``
verifies it against a value you trust (a colleague's copy, an earlier download).
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from octattn.data.layout import find_dataset_root
from octattn.errors import DataError


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable data set archive."""

    name: str
    url: str
    filename: str
    sha256: str | None = None


SOURCES: dict[str, DatasetSource] = {
    "kermany": DatasetSource(
        name="kermany",
        url="https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
        "5699a1d8-d1b6-45db-bb92-b61051445347/file_downloaded",
        filename="OCT2017.tar.gz",
    ),
}

CHUNK = 1 << 20


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: str | Path, expected_sha256: str | None = None, progress: bool = True) -> str:
    """Download ``url`` to ``dest``, resuming a ``dest.part`` left by an earlier attempt.

    Returns the file's SHA-256. The finished file appears under its name only once the
    download is complete and, when ``expected_sha256`` is given, verified.

    Raises:
        DataError: network failure (the partial file is kept for resuming) or checksum mismatch.
    """
    dest = Path(dest)
    if dest.exists():
        digest = sha256_of(dest)
        if expected_sha256 and digest != expected_sha256.lower():
            raise DataError(f"{dest}: exists with SHA-256 {digest}, expected {expected_sha256}")
        return digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "octattn", **({"Range": f"bytes={start}-"} if start else {})}
    try:
        with urlopen(Request(url, headers=headers), timeout=60) as response:
            if start and response.status != 206:
                start = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = int(length) + start if length else None
            with (
                open(part, "ab" if start else "wb") as handle,
                tqdm(total=total, initial=start, unit="B", unit_scale=True, disable=not progress) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    bar.update(len(block))
    except HTTPError as exc:
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason} (partial download kept at {part})") from exc
    except (URLError, OSError, TimeoutError) as exc:
        raise DataError(f"{url}: download failed ({exc}); run again to resume from {part}") from exc
    digest = sha256_of(part)
    if expected_sha256 and digest != expected_sha256.lower():
        part.unlink()
        raise DataError(f"{url}: SHA-256 {digest} does not match the expected {expected_sha256}; download removed")
    part.rename(dest)
    return digest


def unpack(archive: str | Path, out_dir: str | Path) -> None:
    """Unpack a .tar(.gz) or .zip archive; members may not escape ``out_dir``."""
    archive, out = Path(archive), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(out, filter="data")  # refuses absolute paths, '..', links out, devices
            else:  # Python before 3.10.12 / 3.11.4: check the members ourselves
                root = out.resolve()
                for member in tar.getmembers():
                    unsafe = member.issym() or member.islnk() or member.isdev()
                    if unsafe or not (out / member.name).resolve().is_relative_to(root):
                        raise DataError(f"{archive}: member {member.name!r} is unsafe to unpack")
                tar.extractall(out)
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            root = out.resolve()
            for name in zf.namelist():
                if not (out / name).resolve().is_relative_to(root):
                    raise DataError(f"{archive}: member {name!r} would be written outside {out}")
            zf.extractall(out)
    else:
        raise DataError(f"{archive}: not a tar or zip archive")


def download_dataset(
    source: DatasetSource, out_dir: str | Path, expected_sha256: str | None = None, progress: bool = True
) -> tuple[Path, str]:
    """Download, verify and unpack a data set; returns (data set root, archive SHA-256)."""
    out = Path(out_dir)
    archive = out / source.filename
    digest = download_file(source.url, archive, expected_sha256 or source.sha256, progress)
    (out / (source.filename + ".sha256")).write_text(f"{digest}  {source.filename}\n")
    unpacked = out / "unpacked"
    if not unpacked.exists():
        unpack(archive, out / "unpacked.partial")
        (out / "unpacked.partial").rename(unpacked)
    return find_dataset_root(unpacked), digest
