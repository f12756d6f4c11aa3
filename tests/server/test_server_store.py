"""The store is bounded (count and age) and `default_server()` is one server per process."""
from __future__ import annotations

import pytest
from google import genai

from gemini_magics.server import store as store_mod
from gemini_magics.server.store import Store


def _put(s: Store, iid: str, prev=None):
    res = {"id": iid, "object": "interaction", "status": "completed"}
    if prev:
        res["previous_interaction_id"] = prev
    s.put(res, [{"type": "user_input", "content": [{"type": "text", "text": iid}]}],
          [{"type": "model_output", "content": [{"type": "text", "text": "re " + iid}]}], [])


def test_oldest_interactions_are_dropped_beyond_the_limit():
    s = Store(max_items=3)
    for k in range(5):
        _put(s, f"i{k}", prev=f"i{k - 1}" if k else None)
    assert s.count() == 3
    assert s.get("i0") is None and s.get("i1") is None
    assert s.get("i4")["steps"][0]["content"][0]["text"] == "re i4"
    # a chain whose oldest links expired still gives the turns that remain
    assert [st["content"][0]["text"] for st in s.history("i4")] == \
        ["i2", "re i2", "i3", "re i3", "i4", "re i4"]


def test_oldest_interactions_are_dropped_beyond_the_byte_limit():
    s = Store(max_bytes=1000)
    for k in range(20):
        _put(s, f"i{k}")
    assert 1 < s.count() < 20
    assert s.get("i19") is not None and s.get("i0") is None
    s.delete("i19")
    assert s.get("i19") is None


def test_interactions_expire_after_the_ttl(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(store_mod.time, "time", lambda: clock[0])
    s = Store(ttl_seconds=60)
    _put(s, "old")
    clock[0] += 61
    assert s.get("old") is None
    _put(s, "new")
    assert s.count() == 1 and s.get("new") is not None


def test_unwritable_db_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--db"):
        Store(str(tmp_path / "no" / "such" / "dir" / "x.db"))


def test_default_server_is_shared_and_lazily_started(monkeypatch):
    import gemini_magics.server as server

    monkeypatch.setenv(server.ENGINE_ENV, "echo")
    monkeypatch.setattr(server, "_default", None)
    a = server.default_server()
    try:
        assert server.default_server() is a
        c = genai.Client(api_key=a.api_key, http_options={"base_url": a.base_url})  # its key
        assert c.interactions.create(model="m", input="hi").output_text.endswith("said: hi")
    finally:
        a.stop()
    b = server.default_server()  # a stopped default is replaced
    try:
        assert b is not a and b.running
    finally:
        b.stop()
