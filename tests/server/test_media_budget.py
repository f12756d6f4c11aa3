"""The per-request media budget (issue #18): at most 3,000 media parts a request, Gemini's own
limit, refused before any is decoded; 3,000 tiny parts are all described while another key's
requests stay responsive (test_untrusted_media.under_attack). A real echo server over sockets."""
from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from test_untrusted_media import inline, server, under_attack  # noqa: F401 - server: a fixture

from gemini_magics.server.protocol import MAX_MEDIA_PARTS

LIMIT_SENTENCE = ("has 3,001 media parts (images, audio, video, documents); a request may carry "
                  "at most 3,000, as in Gemini's API; send them over several requests.")


def tiny_pngs(count: int) -> list[dict]:
    """`count` different 2x2 PNG parts (~80 bytes each; no two share a description)."""
    parts = []
    for i in range(count):
        out = io.BytesIO()
        Image.new("RGB", (2, 2), (i % 256, i // 256 % 256, 7)).save(out, "PNG")
        parts.append(inline("image", "image/png", out.getvalue()))
    return parts


@pytest.fixture(scope="module")
def pngs() -> list[dict]:
    return tiny_pngs(MAX_MEDIA_PARTS + 1)


def test_one_part_over_the_limit_is_a_400_naming_it(server, pngs):
    body = {"model": "m", "input": [{"type": "text", "text": "what are these?"}, *pngs]}
    r = httpx.post(server.base_url + "/v1beta/interactions", json=body, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "'input' " + LIMIT_SENTENCE


def test_one_part_over_the_limit_is_a_400_for_count_tokens_too(server, pngs):
    parts = [{"inlineData": {"mimeType": p["mime_type"], "data": p["data"]}} for p in pngs]
    r = httpx.post(server.base_url + "/v1beta/models/m:countTokens", timeout=30,
                   json={"contents": [{"role": "user", "parts": parts}]})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "'contents' " + LIMIT_SENTENCE


def test_parts_up_to_the_limit_are_all_described_and_do_not_stall_another_key(server, pngs):
    answer = under_attack(server, pngs[:MAX_MEDIA_PARTS], attackers=1)
    assert answer.count("[Attached image: PNG, 2x2 pixels, RGB, ") == MAX_MEDIA_PARTS
