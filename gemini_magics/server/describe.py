"""Describe media content parts in words, so the local text model can talk about them.

The offline model reads text only. Each image, audio, video or document part becomes one
bracketed line (type, size, pixel dimensions, duration, page or row counts: whatever is cheap
to learn with the standard library and Pillow). Nothing here fetches a URL, and bad data yields
a description saying so instead of an exception: a corrupt upload must not crash the server.
"""
from __future__ import annotations

import binascii
import colorsys
import hashlib
from collections import OrderedDict
import csv
import io
import re
import threading
import wave

from PIL import Image, UnidentifiedImageError

from ..catalog import human_size

__all__ = ["describe_part", "part_bytes"]

_MAX_ANALYSED_PIXELS = 40_000_000  # above this we report size and format but skip the colour
_EXCERPT = 300
# Images in a conversation's history are described again on every turn: remember the text by a
# digest of the data (never the data itself, which may be megabytes).
_CACHE: OrderedDict[bytes, str] = OrderedDict()
_CACHE_SIZE = 256
_CACHE_LOCK = threading.Lock()  # the server describes parts from several worker threads
_OFFICE = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word document",
    "application/msword": "Word document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template": "Word template",
    "application/vnd.oasis.opendocument.text": "OpenDocument text",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel spreadsheet",
    "application/vnd.ms-excel": "Excel spreadsheet",
    "application/vnd.oasis.opendocument.spreadsheet": "OpenDocument spreadsheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint presentation",
    "application/vnd.ms-powerpoint": "PowerPoint presentation",
    "application/vnd.oasis.opendocument.presentation": "OpenDocument presentation",
}


def part_bytes(part: dict) -> bytes | None:
    """The decoded inline `data` of a content part, or None (no data, or not base64)."""
    data = part.get("data") if isinstance(part, dict) else None
    if not data:
        return None
    if isinstance(data, (bytes, bytearray)) and not _looks_b64(data):
        return bytes(data)
    try:
        raw = binascii.a2b_base64(data)
    except (binascii.Error, ValueError, TypeError):
        return None
    return raw or None  # junk that base64 silently skips decodes to nothing


def _looks_b64(data: bytes | bytearray) -> bool:
    return re.fullmatch(rb"[A-Za-z0-9+/=\s]*", data[:4096]) is not None


def describe_part(part: dict, label: str | None = None) -> str:
    """One line such as '[Attached image: PNG, 640x480 pixels, RGB, mostly dark blue, 12.3 KB]'.

    `label` replaces "Attached image" (e.g. "Generated image" for the model's own outputs).
    """
    data = part.get("data") if isinstance(part, dict) else None
    if not data or not isinstance(data, (str, bytes)):
        return _describe(part, label)
    key = hashlib.blake2b(f"{label}|{part.get('type')}|{part.get('mime_type')}|".encode()
                          + (data.encode("ascii", "replace") if isinstance(data, str) else data),
                          digest_size=16).digest()
    with _CACHE_LOCK:
        text = _CACHE.get(key)
        if text is not None:
            _CACHE.move_to_end(key)
            return text
    text = _describe(part, label)
    with _CACHE_LOCK:
        _CACHE[key] = text
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return text


def _describe(part: dict, label: str | None = None) -> str:
    if not isinstance(part, dict):
        return f"[Attached content of an unknown kind ({type(part).__name__})]"
    kind = str(part.get("type") or "file")
    mime = str(part.get("mime_type") or "").lower()
    if kind == "text":
        return str(part.get("text") or "")
    label = label or f"Attached {kind}"
    uri = part.get("uri")
    if not part.get("data"):
        if uri:
            what = f", {mime}" if mime else ""
            return (f"[{label}: remote file {uri}{what}; not fetched (the offline server never "
                    "downloads URLs), so only its name is known]")
        return f"[{label}: empty (no data and no uri)]"
    raw = part_bytes(part)
    if raw is None:
        return f"[{label}{_paren(mime)}: could not be decoded (the data is not valid base64)]"
    try:
        if kind == "image" or mime.startswith("image/"):
            detail = _image(raw)
        elif kind == "audio" or mime.startswith("audio/"):
            detail = _audio(raw, mime)
        elif mime == "application/pdf" or raw[:1024].find(b"%PDF-") >= 0 and kind == "document":
            detail = _pdf(raw)
        elif mime in ("text/csv", "application/csv"):
            detail = _csv(raw)
        elif mime.startswith("text/") or mime in ("application/json", "application/xml"):
            detail = _text(raw, mime)
        else:
            detail = f"{_OFFICE.get(mime) or mime or 'unknown type'}"
    except _Undecodable as exc:
        return f"[{label}{_paren(mime)}, {human_size(len(raw))}: could not be decoded ({exc})]"
    return f"[{label}: {detail}, {human_size(len(raw))}]"


class _Undecodable(Exception):
    """The bytes are not what the part claims to be."""


def _paren(mime: str) -> str:
    return f" ({mime})" if mime else ""


# ----------------------------------------------------------------------------- images
def _image(raw: bytes) -> str:
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt, (w, h), mode = img.format, img.size, img.mode
            frames = getattr(img, "n_frames", 1)
            colour = ""
            if w * h <= _MAX_ANALYSED_PIXELS:
                img.draft("RGB", (64, 64))  # JPEG decodes at 1/8 scale; others decode once
                img.thumbnail((64, 64))     # also forces a full decode: catches truncated files
                colour = _colour_name(img)

    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            EOFError):
        raise _Undecodable("corrupt, truncated or not an image") from None
    parts = [fmt or "image", f"{w}x{h} pixels", mode]
    if frames and frames > 1:
        parts.append(f"{frames} frames")
    if colour:
        parts.append(f"mostly {colour}")
    return ", ".join(parts)


def _colour_name(img: Image.Image) -> str:
    """A rough name for the average colour ('dark blue', 'light grey'); '' for exotic modes."""
    try:
        r, g, b = img.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))[:3]
    except (ValueError, OSError, TypeError):
        return ""
    hue, light, sat = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
    if light < 0.12:
        return "black"
    if light > 0.92:
        return "white"
    shade = "dark " if light < 0.35 else "light " if light > 0.7 else ""
    if sat < 0.15:
        return f"{shade}grey"
    names = [(15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (195, "cyan"),
             (255, "blue"), (290, "purple"), (335, "pink"), (360, "red")]
    degrees = hue * 360
    return shade + next(name for limit, name in names if degrees <= limit)


# ----------------------------------------------------------------------------- audio
def _audio(raw: bytes, mime: str) -> str:
    if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(raw)) as w:
                channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        except (wave.Error, EOFError, ValueError) as exc:
            raise _Undecodable(f"WAV header unreadable: {exc}") from None
        if rate <= 0:
            raise _Undecodable("WAV header gives a sample rate of 0")
        layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")
        return f"WAV, {frames / rate:.1f} seconds, {layout}, {rate} Hz, {8 * width}-bit"
    if "wav" in mime:
        raise _Undecodable("not a WAV file")
    return mime or "audio of unknown type"


# ----------------------------------------------------------------------------- documents
def _pdf(raw: bytes) -> str:
    if raw[:1024].find(b"%PDF-") < 0:
        raise _Undecodable("not a PDF file")
    # Page objects are usually plain text; in compressed object streams we only find /Count.
    pages = len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", raw))
    if not pages:
        counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", raw)]
        counts += [int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", raw)]
        pages = max(counts, default=0)
    text = f"PDF, {pages} page{'s' if pages != 1 else ''}" if pages else "PDF, page count unknown"
    if b"/Encrypt" in raw:
        text += ", encrypted"
    return text


def _decode_text(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")  # never fails; good enough to count rows


def _csv(raw: bytes) -> str:
    text = _decode_text(raw)
    if "\x00" in text:
        raise _Undecodable("binary data, not CSV text")
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = [row for row in csv.reader(io.StringIO(text), dialect) if row]
    except csv.Error as exc:
        raise _Undecodable(f"malformed CSV: {exc}") from None
    if not rows:
        return "CSV table, empty"
    columns = max(len(r) for r in rows)
    try:
        header = csv.Sniffer().has_header(text[:8192]) if len(rows) > 1 else False
    except csv.Error:
        header = False
    first = _clip(", ".join(c.strip() for c in rows[0]), _EXCERPT)
    data_rows = len(rows) - 1 if header else len(rows)
    where = "header" if header else "first row"
    return f"CSV table, {data_rows} rows x {columns} columns, {where}: {first}"


def _text(raw: bytes, mime: str) -> str:
    text = _decode_text(raw)
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    excerpt = _clip(" ".join(text.split()), _EXCERPT)
    return f"text file ({mime}), {lines} lines, begins: \"{excerpt}\""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


