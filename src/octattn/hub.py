"""The Hugging Face Hub, reached once: files from its cache first, then a quick check that
the network is there, then the download.

Offline, ``huggingface_hub`` retries for about 25 seconds and logs a line per retry before
it gives up. octattn looks in the local cache first (a file fetched once keeps working
offline), then checks once per process whether the Hub's host can be reached at all, and
says in one line what to do when it cannot.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from octattn.errors import OctattnError

DEFAULT_ENDPOINT = "https://huggingface.co"
REACH_TIMEOUT_S = 3.0


class HubUnavailable(OctattnError):
    """The Hub cannot be reached and the file is not in the local cache."""


def hub_endpoint() -> str:
    """The Hub's address (``HF_ENDPOINT`` for a mirror, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def offline_requested() -> bool:
    """``HF_HUB_OFFLINE=1``: the user asked for no network at all."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=4)
def hub_reachable(endpoint: str | None = None, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub's host opens within ``timeout`` (asked once per process)."""
    if offline_requested():
        return False
    url = urlparse(endpoint or hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_file(repo_id: str, filename: str, what: str, instead: str) -> Path:
    """A file of a Hub repository: from the cache, else downloaded.

    Args:
        repo_id: ``ORG/NAME``.
        filename: the file inside the repository.
        what: what the file is, for the error message ("pretrained weights").
        instead: what the user can do without the network ("pass --weights PATH").

    Raises:
        HubUnavailable: not cached and the Hub cannot be reached (one line).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if not hub_reachable():
        reason = "HF_HUB_OFFLINE is set" if offline_requested() else f"{hub_endpoint()} cannot be reached"
        raise HubUnavailable(f"cannot fetch {what} {repo_id}: {reason} (no network?); {instead}")
    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as exc:  # the hub raises many types: HTTP, missing repo, auth, disk
        raise HubUnavailable(f"cannot fetch {what} {repo_id}/{filename}: {exc}; {instead}") from exc
