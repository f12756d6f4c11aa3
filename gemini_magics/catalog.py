"""What the API offers and what we call it: models, tools, thinking levels, image ratios and sizes.

The one module both sides share: the magics (options, panel, parsing) and the local server
(validation, emulation, rendering) import these names from here and from nowhere else, so a
new tool or image size is added once. It holds plain values and pure functions only (no
IPython, no SDK at import time), which is why `server/` may import it.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
from functools import lru_cache
from typing import Optional, Union, get_args

__all__ = [
    "DEFAULT_MODEL", "TEXT_MODELS", "IMAGE_MODELS", "LOCAL_MODEL", "MODEL_CHOICES", "model_choices",
    "AGENTS", "sdk_names", "is_known", "unknown_name_warning",
    "BUILTIN_TOOLS", "PANEL_TOOLS", "COMPUTER_ENVIRONMENTS", "THINKING_LEVELS",
    "ASPECT_RATIOS", "IMAGE_SIZES", "normalize_aspect_ratio", "normalize_image_size",
    "human_size", "PROOF_PATH", "key_proof", "is_loopback",
]

DEFAULT_MODEL = "gemini-3.5-flash"
TEXT_MODELS = (
    "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-pro-preview", "gemini-3-flash-preview",
    "gemini-3.1-flash-lite", "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
)
IMAGE_MODELS = ("gemini-3.1-flash-image", "gemini-3-pro-image", "gemini-2.5-flash-image",
                "gemini-3.1-flash-lite-image")
# Picking this model in the panel also sets GeminiMagics.offline: the local server answers.
LOCAL_MODEL = "local-offline"
MODEL_CHOICES = TEXT_MODELS + IMAGE_MODELS + (LOCAL_MODEL,)
# Managed agents we name in help and examples (the SDK's AgentOption lists these and more).
AGENTS = ("antigravity-preview-05-2026",)

# Built-in tools the Interactions API declares as {"type": NAME}; the local server emulates
# every one of them offline.
BUILTIN_TOOLS = ("google_search", "code_execution", "url_context", "google_maps", "file_search",
                 "computer_use")
# The panel offers the ones a click can turn on (computer_use needs an environment).
PANEL_TOOLS = BUILTIN_TOOLS[:5]
COMPUTER_ENVIRONMENTS = ("browser", "mobile", "desktop")
THINKING_LEVELS = ("minimal", "low", "medium", "high", "xhigh")

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
                 "1:8", "8:1", "1:4", "4:1")
IMAGE_SIZES = ("512", "1K", "2K", "4K")


@lru_cache(maxsize=None)
def sdk_names(kind: str = "model") -> tuple:
    """The names google-genai's Interactions types list for `kind` ("model": its `Model`
    literal, "agent": its `AgentOption`), in its order; () if this SDK has no such list. Imports
    the SDK (about a second), so it is read only for a name our own lists do not have."""
    try:
        from google.genai import interactions  # deferred: google.genai

        alias = getattr(interactions, "Model" if kind == "model" else "AgentOption")
    except Exception:  # noqa: BLE001 - another SDK layout: our lists are enough
        return ()
    return tuple(a for arg in get_args(alias) for a in (get_args(arg) or (arg,))
                 if isinstance(a, str))


def model_choices() -> tuple:
    """The panel's model list: ours first, then the SDK's own current Gemini text and image
    models (not speech, transcription or robotics) that we do not list, then the offline model.
    Imports the SDK, so call it where google.genai is loaded anyway (the panel, not %load_ext)."""
    extra = tuple(n for n in sdk_names("model") if n.startswith("gemini-")
                  and n not in MODEL_CHOICES and "robotics" not in n
                  and not n.endswith(("-tts", "-tts-preview", "-transcribe")))
    return TEXT_MODELS + IMAGE_MODELS + extra + (LOCAL_MODEL,)


def is_known(name: str, kind: str = "model") -> bool:
    """Whether `name` is a model (or agent) the API offers: ours, or in the SDK's own list."""
    ours = MODEL_CHOICES if kind == "model" else AGENTS
    return name in ours or name in sdk_names(kind)


def unknown_name_warning(name: str, kind: str = "model") -> Optional[str]:
    """One sentence for an offline request naming a model or agent the API does not know
    (a typo the local model would hide until a key is set); None for a known name."""
    if not name or is_known(name, kind):
        return None
    what = "Gemini model" if kind == "model" else "Gemini agent"
    return (f"{name!r} is not a known {what}; the local model answers anyway, but with a key "
            f"set it would fail.")


def normalize_aspect_ratio(value: Optional[str]) -> Optional[str]:
    """'16:9' (spaces ignored) or None; anything else raises ValueError listing the ratios."""
    if value is None:
        return None
    text = str(value).replace(" ", "")
    if text not in ASPECT_RATIOS:
        raise ValueError(f"Unsupported aspect ratio {value!r}: use one of {', '.join(ASPECT_RATIOS)}.")
    return text


def normalize_image_size(value: Union[str, int, None]) -> Optional[str]:
    """'512', '1K', '2K' or '4K' (case-insensitive) or None; anything else raises ValueError."""
    if value is None:
        return None
    text = str(value).strip().upper()
    if text not in IMAGE_SIZES:
        raise ValueError(f"Unsupported image size {value!r}: use one of {', '.join(IMAGE_SIZES)}.")
    return text


def human_size(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, like the Gemini docs); one wording for every message."""
    if n < 1000:
        return f"{int(n)} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
    return f"{n} bytes"


# A kernel asks a shared server found through its discovery file to prove it holds the file's
# key before sending it anything keyed: GET PROOF_PATH?nonce=HEX (no key sent) answers
# {"proof": key_proof(key, nonce)}, which an impostor on a stale file's port cannot compute.
PROOF_PATH = "/gemini-magics/proof"


def key_proof(key: str, nonce: str) -> str:
    """HMAC-SHA256 of `nonce` under `key`, hex: what both sides of the proof compute."""
    return hmac.new(key.encode(), b"gemini-magics proof:" + nonce.encode(),
                    hashlib.sha256).hexdigest()


def is_loopback(host: Optional[str]) -> bool:
    """A loopback host: `localhost` or a loopback IP literal (brackets allowed); a name is never
    resolved, since resolving it could already reach the network. One rule for the server (who
    may connect, whom it may call) and the client (is an endpoint local?)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
