"""Many streams at once: none loses, duplicates or reorders an event."""
from __future__ import annotations

import asyncio
import json

import httpx
from conftest import make_client
from strict import streamed_text

from gemini_magics.server.event_ids import resume_position

N_STREAMS = 200
N_WORDS = 50


async def _one_stream(c: httpx.AsyncClient, k: int) -> tuple[list[int], str]:
    body = {"model": "m", "input": f"/words {N_WORDS}", "stream": True}
    events = []
    async with c.stream("POST", "/v1/interactions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
    iid = events[0]["interaction"]["id"]
    return [resume_position(ev["event_id"], iid) for ev in events], streamed_text(events)


def test_200_concurrent_streams_lose_and_reorder_nothing(base_url):
    async def run():
        limits = httpx.Limits(max_connections=N_STREAMS)
        async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as c:
            return await asyncio.gather(*(_one_stream(c, k) for k in range(N_STREAMS)))

    results = asyncio.run(run())
    expected = " ".join(f"w{i}" for i in range(1, N_WORDS + 1))
    for ids, text in results:
        assert ids == list(range(1, len(ids) + 1))
        assert text == expected


def test_concurrent_sdk_streams(base_url):
    async def run():
        c = make_client(base_url)

        async def one(k):
            stream = await c.aio.interactions.create(model="m", input=f"stream {k}", stream=True)
            return streamed_text([e async for e in stream])

        return await asyncio.gather(*(one(k) for k in range(20)))

    for k, text in enumerate(asyncio.run(run())):
        assert text.endswith(f"You said: stream {k}")
