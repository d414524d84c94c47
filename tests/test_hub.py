"""The Hub reached once: the cache first, one quick reachability check, one clear line."""

import socket
import time

import pytest

from octattn import hub
from octattn.hub import HubUnavailable, hub_file, hub_reachable


@pytest.fixture(autouse=True)
def fresh_reachability(monkeypatch, tmp_path):
    hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield
    hub_reachable.cache_clear()


def test_unreachable_hub_is_said_once_without_the_retries(monkeypatch):
    attempts = []

    def refuse(address, timeout):
        attempts.append(address)
        raise OSError("network unreachable")

    def must_not_download(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError("downloaded although the hub is unreachable")
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", must_not_download)
    start = time.perf_counter()
    for _ in range(3):  # several presets in one process: the network is probed once
        with pytest.raises(
            HubUnavailable, match=r"^cannot fetch weights ORG/NAME: .* cannot be reached .*; use a file$"
        ):
            hub_file("ORG/NAME", "model.safetensors", "weights", "use a file")
    assert time.perf_counter() - start < 2 and len(attempts) == 1


def test_cached_file_is_used_without_the_network(monkeypatch, tmp_path):
    cached = tmp_path / "model.safetensors"
    cached.write_bytes(b"x")
    monkeypatch.setattr(
        "huggingface_hub.hf_hub_download", lambda *a, **k: str(cached) if k["local_files_only"] else 1 / 0
    )
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed the network"))
    assert hub_file("ORG/NAME", "model.safetensors", "weights", "x") == cached


def test_offline_setting_skips_the_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed the network"))
    assert hub_reachable() is False
    assert hub.offline_requested()


def test_mirror_endpoint_is_probed(monkeypatch):
    probed = []

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def accept(address, timeout):
        probed.append(address)
        return Connection()

    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080")
    monkeypatch.setattr(socket, "create_connection", accept)
    assert hub_reachable() is True and probed == [("mirror.local", 8080)]
