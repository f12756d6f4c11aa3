"""`webhook_config`: when an interaction ends, POST it to the URIs its request named.

The body is an `interaction.completed` event (as Google's webhook events are named: `type`,
`id`, `timestamp`) with the request's `user_metadata` and the whole finished `interaction`
(its steps included), so a listener needs no second call. One try per URI, a short timeout,
no proxy and no redirects, on a thread of its own: a slow or dead listener never holds a turn
slot or changes how the turn ended (a failure goes to the log).

A server sends only to loopback addresses (127.0.0.0/8, ::1, `localhost`), as an offline server
should not reach out: anything else is a 400 when the request is made
(`protocol.check_webhook_config`), unless the server runs with GEMINI_MAGICS_WEBHOOK_HOSTS=any.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Optional

from .protocol import shown

log = logging.getLogger(__name__)

__all__ = ["deliver", "TIMEOUT_SECONDS"]

TIMEOUT_SECONDS = 5.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect could lead off loopback
        return None


def _post(uri: str, body: bytes) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    request = urllib.request.Request(uri, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "gemini-magics-server"})
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            response.read(65536)
    except (urllib.error.URLError, OSError, ValueError) as e:
        log.warning("webhook %s was not delivered: %s", shown(uri), e)


def deliver(config: Optional[dict], interaction: dict, timestamp: str) -> Optional[threading.Thread]:
    """POST the finished `interaction` to each of `config`'s URIs, on a daemon thread (which
    is returned; None when there is nothing to send)."""
    uris = (config or {}).get("uris") or []
    if not uris:
        return None
    event = {"type": "interaction.completed", "id": interaction.get("id"),
             "timestamp": timestamp, "interaction": interaction}
    if config.get("user_metadata") is not None:
        event["user_metadata"] = config["user_metadata"]
    body = json.dumps(event, ensure_ascii=False, allow_nan=False).encode("utf-8", "replace")

    def send() -> None:
        for uri in uris:
            _post(uri, body)

    thread = threading.Thread(target=send, name="gm-webhook", daemon=True)
    thread.start()
    return thread
