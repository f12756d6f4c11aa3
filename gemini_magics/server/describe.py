"""Describe media content parts in words, so the local text model can talk about them.

The offline model reads text only. Each image, audio, video or document part becomes one
bracketed line (type, size, pixel dimensions, duration, page or row counts: whatever is cheap
to learn with the standard library and Pillow). Nothing here fetches a URL, and bad data yields
a description saying so instead of an exception: a corrupt upload must not crash the server.

The bytes are untrusted, so every parser here runs in time linear in its input with a small
constant: headers are read from the first `_HEADER_BYTES` only, documents are scanned with
`find`/`count` or patterns whose every match is bounded (a regex that can backtrack over the
whole input once held the GIL for 13 s on a 180 KB "PDF"), and pixels are decoded (for the
colour) only while that costs no more than a few pixels per byte received, so a 100 KB PNG that
claims 40 megapixels is described from its header alone.
"""
from __future__ import annotations

import binascii
import codecs
import colorsys
import csv
import hashlib
import io
import itertools
import re
import threading
import wave
from collections import OrderedDict

from PIL import Image

from ..catalog import human_size

__all__ = ["describe_part", "part_bytes"]

_EXCERPT = 300
_HEADER_BYTES = 256 * 1024  # image and WAV headers are read from this much of the data at most
_IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")  # the plugins we let parse bytes
# Pixels are decoded (for the colour, and to catch a truncated file) only if there are at most
# this many plus _PIXELS_PER_BYTE per byte of data, so decoding stays linear in what was sent
# (~7 ns a pixel: at most ~0.25 us a byte). Drawings and photos pass (the teaching notebook's
# 200x200 triangle has 30 pixels a byte); a 126 KB PNG claiming 40 megapixels (316) does not.
_FREE_PIXELS = 4096
_PIXELS_PER_BYTE = 32
_TABLE_BYTES = 1024 * 1024  # CSV rows are parsed in this much; beyond it, lines are counted
_SNIFF_LINES = 20           # lines read to guess a CSV delimiter and header
_PDF_TREES = 1000           # /Type/Pages dictionaries examined for a /Count
_PDF_DICT_BYTES = 512       # how far from /Type/Pages its /Count may be
# Images in a conversation's history are described again on every turn: remember the text by a
# digest of the data (never the data itself, which may be megabytes).
_CACHE: OrderedDict[bytes, str] = OrderedDict()
_CACHE_SIZE = 4096  # ~100-byte texts; a history with more media than this is described afresh each turn
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
    # WebP's header is parsed by libwebp in C from the whole data; the other plugins walk chunks,
    # markers or frames in Python, so they get the first _HEADER_BYTES only.
    head = raw if raw[8:12] == b"WEBP" else raw[:_HEADER_BYTES]
    try:
        with Image.open(io.BytesIO(head), formats=_IMAGE_FORMATS) as img:
            fmt, (w, h), mode = img.format, img.size, img.mode
            frames = _frames(img)
            if head is raw:
                colour = _colour(img, len(raw))
        if head is not raw:
            with Image.open(io.BytesIO(raw), formats=_IMAGE_FORMATS) as img:
                colour = _colour(img, len(raw))
    except Image.DecompressionBombError:
        raise _Undecodable("it claims more pixels than the server reads") from None
    except Exception:  # noqa: BLE001 - Pillow's plugins raise many kinds of error on bad bytes
        raise _Undecodable("corrupt, truncated or not an image") from None
    parts = [fmt or "image", f"{w}x{h} pixels", mode]
    if frames > 1:
        counted_all = head is raw or fmt not in ("GIF", "TIFF")  # these two count by walking the file
        parts.append(f"{frames} frames" if counted_all else f"at least {frames} frames")
    if colour:
        parts.append(f"mostly {colour}")
    return ", ".join(parts)


def _frames(img: Image.Image) -> int:
    try:
        return int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - a damaged later frame only makes the count unknown
        return 1


def _colour(img: Image.Image, size: int) -> str:
    """The colour name, if decoding the (JPEG: reduced) image costs few enough pixels; decoding
    also raises on a truncated file, which the caller reports as undecodable."""
    img.draft("RGB", (64, 64))  # JPEG decodes at up to 1/8 scale, and says so in img.size
    if img.width * img.height > _FREE_PIXELS + _PIXELS_PER_BYTE * size:
        return ""
    img.thumbnail((64, 64))
    return _colour_name(img)


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
        try:  # the header, up to the start of the samples, is all that is read
            with wave.open(io.BytesIO(raw[:_HEADER_BYTES])) as w:
                channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        except (wave.Error, EOFError, ValueError) as exc:
            why = (f"no audio data in its first {human_size(_HEADER_BYTES)}" if len(raw) > _HEADER_BYTES
                   else exc or "it ends early")
            raise _Undecodable(f"WAV header unreadable: {why}") from None
        if rate <= 0:
            raise _Undecodable("WAV header gives a sample rate of 0")
        layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")
        return f"WAV, {frames / rate:.1f} seconds, {layout}, {rate} Hz, {8 * width}-bit"
    if "wav" in mime:
        raise _Undecodable("not a WAV file")
    return mime or "audio of unknown type"


# ----------------------------------------------------------------------------- documents
_PAGE = re.compile(rb"/Type\s{0,32}/Page(?![A-Za-z])")
_PAGES = re.compile(rb"/Type\s{0,32}/Pages(?![A-Za-z])")
_COUNT = re.compile(rb"/Count\s{1,32}(\d{1,9})")
_LONGEST = 48               # bytes: no match of the three patterns above is longer
_SCAN_BYTES = 1024 * 1024   # a pattern searches this much per call, so the GIL is free between


def _pdf(raw: bytes) -> str:
    if raw[:1024].find(b"%PDF-") < 0:
        raise _Undecodable("not a PDF file")
    # Page objects are usually plain text; in compressed object streams we only find /Count.
    pages = sum(1 for _ in _scan(_PAGE, raw))
    if not pages:
        pages = max(_page_tree_counts(raw), default=0)
    text = f"PDF, {pages} page{'s' if pages != 1 else ''}" if pages else "PDF, page count unknown"
    if b"/Encrypt" in raw:
        text += ", encrypted"
    return text


def _scan(pattern: re.Pattern, raw: bytes):
    """`pattern.finditer(raw)` a _SCAN_BYTES piece at a time: one search of 24 MB holds the GIL
    (and every other request) for a third of a second. Pieces overlap by _LONGEST bytes and a
    match is taken from the piece it starts in."""
    for start in range(0, len(raw), _SCAN_BYTES):
        stop = start + _SCAN_BYTES
        for match in pattern.finditer(raw, start, stop + _LONGEST):
            if match.start() >= stop:
                break
            yield match


def _page_tree_counts(raw: bytes):
    """The /Count of the first _PDF_TREES page-tree nodes: a /Count in the same dictionary (no
    '>' between them) within _PDF_DICT_BYTES either side of /Type/Pages."""
    for n, tree in enumerate(_scan(_PAGES, raw)):
        if n == _PDF_TREES:
            return
        before = raw[max(0, tree.start() - _PDF_DICT_BYTES):tree.start()]
        after = raw[tree.end():tree.end() + _PDF_DICT_BYTES]
        before = before[before.rfind(b">") + 1:]
        after = after[:after.find(b">")] if b">" in after else after
        for window in (before, after):
            yield from (int(m.group(1)) for m in _COUNT.finditer(window))


def _decode_head(raw: bytes, limit: int) -> str:
    """The text of the first `limit` bytes (a character cut at the end is left out): UTF-16 with
    a BOM, else UTF-8, else Latin-1 (never fails; good enough to count rows)."""
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return codecs.getincrementaldecoder(encoding)().decode(raw[:limit], final=len(raw) <= limit)
    except UnicodeDecodeError:
        pass
    return raw[:limit].decode("latin-1")


def _newline(raw: bytes) -> bytes:
    """A line end as it appears in the bytes (UTF-16 is known by its BOM)."""
    return {b"\xff\xfe": b"\n\x00", b"\xfe\xff": b"\x00\n"}.get(raw[:2], b"\n")


def _csv(raw: bytes) -> str:
    nl, end = _newline(raw), len(raw)
    if end > _TABLE_BYTES:  # rows are parsed in whole lines up to _TABLE_BYTES, then counted
        end = raw.rfind(nl, 0, _TABLE_BYTES) + len(nl) if nl in raw[:_TABLE_BYTES] else _TABLE_BYTES
    text = _decode_head(raw, end)
    if "\x00" in text:
        raise _Undecodable("binary data, not CSV text")
    sample = "".join(itertools.islice(io.StringIO(text[:8192]), _SNIFF_LINES))
    dialect = _dialect(sample)
    rows, columns, first = 0, 0, []
    try:
        for row in csv.reader(io.StringIO(text), dialect):
            if row:
                rows += 1
                columns = max(columns, len(row))
                first = first or row
    except csv.Error as exc:
        raise _Undecodable(f"malformed CSV: {exc}") from None
    rows += raw.count(nl, end)
    if not rows:
        return "CSV table, empty"
    try:
        header = _HeaderSniffer(dialect).has_header(sample) if rows > 1 else False
    except csv.Error:
        header = False
    excerpt = _clip(", ".join(c.strip() for c in first), _EXCERPT)
    data_rows = rows - 1 if header else rows
    where = "header" if header else "first row"
    about = "about " if end < len(raw) else ""
    return f"CSV table, {about}{data_rows} rows x {columns} columns, {where}: {excerpt}"


def _dialect(sample: str) -> type[csv.Dialect]:
    """The delimiter that splits the most sample lines the same way (csv.Sniffer's regexes can
    take half a second on 8 KB of quotes and commas)."""
    lines = [line for line in sample.splitlines() if line.strip()]
    best, best_score = ",", 0
    for delimiter in ",;\t|":
        counts = [line.count(delimiter) for line in lines]
        score = max((counts.count(c) for c in set(counts) if c), default=0)
        if score > best_score:
            best, best_score = delimiter, score
    return type("_Sniffed", (csv.excel,), {"delimiter": best})


class _HeaderSniffer(csv.Sniffer):
    """csv.Sniffer's header test with our dialect (its own `sniff` is the slow part)."""

    def __init__(self, dialect: type[csv.Dialect]):
        super().__init__()
        self._dialect = dialect

    def sniff(self, sample, delimiters=None):  # noqa: ARG002 - the dialect is already known
        return self._dialect


def _text(raw: bytes, mime: str) -> str:
    nl = _newline(raw)
    lines = raw.count(nl) + (1 if raw and not raw.endswith(nl) else 0)
    excerpt = _clip(" ".join(_decode_head(raw, 16 * _EXCERPT).split()), _EXCERPT)
    return f"text file ({mime}), {lines} lines, begins: \"{excerpt}\""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
