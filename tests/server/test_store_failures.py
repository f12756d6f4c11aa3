"""A store that fails is never silent: no answer says `completed` for what was not kept, and a
damaged database file is refused at startup with one sentence.

The full disk is real: a small tmpfs mounted under `--db` (needs root; skipped otherwise).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gemini_magics.server import start_server
from gemini_magics.server.store import Store

ROOT = Path(__file__).resolve().parents[2]
TMPFS_BYTES = 2 * 1024 * 1024


@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MiB filesystem at tmp_path/disk."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                           str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _sse_events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def _one_sentence(message: str) -> None:
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    assert message.count(". ") == 0, message


def test_a_full_disk_fails_turns_and_never_claims_what_it_did_not_keep(small_disk):
    ballast = small_disk / "ballast"
    with start_server(engine="echo", db=str(small_disk / "chats.sqlite")) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=30) as c:
        first = c.post("/v1/interactions", json={"model": "m", "input": "kept"}).json()
        assert first["status"] == "completed"
        ballast.write_bytes(b"\0" * (TMPFS_BYTES - 512 * 1024))  # leave ~0.5 MiB
        answers = []
        for k in range(12):
            body = {"model": "m", "input": f"turn {k} " + "x" * 100_000}
            mode = k % 3
            if mode == 0:
                answers.append(c.post("/v1/interactions", json=body).json())
            elif mode == 1:  # a stream: its last events say what happened
                events = _sse_events(c.post("/v1/interactions?alt=sse", json=body).text)
                last = events[-1]["interaction"]
                assert events[-1]["event_type"] == "interaction.completed"
                if last["status"] == "failed":
                    assert events[-2]["event_type"] == "error"
                    assert events[-2]["error"]["code"] == "storage"
                answers.append(last)
            else:  # background: poll until it ends
                job = c.post("/v1/interactions", json={**body, "background": True}).json()
                deadline = time.monotonic() + 20
                while True:
                    got = c.get(f"/v1/interactions/{job['id']}")
                    if got.status_code == 404 or got.json()["status"] != "in_progress":
                        break
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                answers.append(got.json() if got.status_code == 200 else
                               {"id": job["id"], "status": "gone"})
        failed = 0
        for a in answers:
            stored = c.get(f"/v1/interactions/{a['id']}")
            if a["status"] == "completed":
                assert stored.status_code == 200, f"answered completed but not stored: {a['id']}"
                assert stored.json()["status"] == "completed"
            else:
                assert a["status"] in ("failed", "gone"), a
                assert stored.status_code == 404
                if a["status"] == "failed":
                    err = a["errors"][0]
                    assert err["code"] == "storage"
                    assert "not kept" in err["message"] and "free disk space" in err["message"]
                    _one_sentence(err["message"])
                failed += 1
        assert failed >= 6, answers  # the disk really was full
        # what was stored before still reads, and a chain continues from it
        nxt = c.post("/v1/interactions", json={"model": "m", "input": "and?",
                                                "previous_interaction_id": first["id"],
                                                "store": False}).json()
        assert nxt["status"] == "completed"
        # room again: turns are kept again
        ballast.unlink()
        again = c.post("/v1/interactions", json={"model": "m", "input": "room again"}).json()
        assert again["status"] == "completed"
        assert c.get(f"/v1/interactions/{again['id']}").status_code == 200


def _damage(path: Path) -> None:
    s = Store(str(path))
    for k in range(200):
        s.put({"id": f"i{k}", "object": "interaction"},
              [{"type": "user_input", "content": [{"type": "text", "text": "x" * 500}]}], [], [])
    s.close()
    with open(path, "r+b") as f:  # the header (page 1) stays intact; pages 3-5 become noise
        f.seek(4096 * 2)
        f.write(bytes((k * 37 + 11) % 256 for k in range(4096 * 3)))


def test_a_damaged_db_file_is_refused_with_one_sentence(tmp_path):
    db = tmp_path / "chats.sqlite"
    _damage(db)
    with pytest.raises(ValueError) as info:
        Store(str(db))
    message = str(info.value)
    assert "damaged" in message and "mv " in message and str(db) in message
    _one_sentence(message.replace(f"{db}.damaged", "X"))
    with pytest.raises(ValueError, match="damaged"):
        start_server(engine="echo", db=str(db))
    (tmp_path / "text.sqlite").write_text("not a database at all\n" * 100)
    with pytest.raises(ValueError, match="damaged"):
        Store(str(tmp_path / "text.sqlite"))


def test_serve_refuses_a_damaged_db_in_one_line(tmp_path):
    db = tmp_path / "chats.sqlite"
    _damage(db)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "gemini_magics", "serve", "--engine", "echo",
                           "--port", "0", "--db", str(db)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and "Traceback" not in proc.stderr
    # moved aside as the sentence says, the server starts on a fresh file
    db.rename(tmp_path / "chats.sqlite.damaged")
    with start_server(engine="echo", db=str(db)) as srv:
        r = httpx.post(srv.base_url + "/v1/interactions", json={"model": "m", "input": "hi"},
                       timeout=30)
        assert r.json()["status"] == "completed"
