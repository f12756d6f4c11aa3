"""Turn what a notebook user hands us (path, URL, PIL image, bytes, variable) into content parts.

Local data goes inline as base64 with a MIME type found from the bytes first (magic numbers,
Pillow) and the file name second; URLs go as `uri` and are never downloaded here. Every problem
is caught before a request is sent and reported as one `MediaError` sentence saying what was wrong
and how to fix it. Inline data is capped at Gemini's 20 MB request limit (base64 included):
bigger files belong behind a URL.
"""
from __future__ import annotations

import base64
import binascii
import html
import io
import mimetypes
import os
import re
import sys
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from .catalog import human_size

__all__ = ["MediaError", "media_part", "media_parts", "is_media_value", "check_inline_size",
           "sniff_mime", "content_type", "png_safe", "INLINE_LIMIT", "sent_media", "sent_bundle",
           "THUMB_HEIGHT"]

# Gemini API docs: a request carrying inline data may total at most 20 MB, base64 text included.
INLINE_LIMIT = 20_000_000
MEDIA_TYPES = ("image", "audio", "video", "document")
# Image types Gemini reads as they are; other formats Pillow can open are converted to PNG.
GEMINI_IMAGE_MIMES = {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif",
                      "image/gif", "image/bmp", "image/tiff"}
OFFICE_MIMES = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".dotx": "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".doc": "application/msword", ".xls": "application/vnd.ms-excel",
    ".ppt": "application/vnd.ms-powerpoint",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
}
_DOCUMENT_MIMES = {"application/pdf", "application/json", "application/xml", "application/rtf",
                   *OFFICE_MIMES.values()}
# Extensions whose MIME type the stdlib table lacks or spells differently from Gemini's docs.
_EXTENSIONS = {
    ".heic": "image/heic", ".heif": "image/heif", ".webp": "image/webp", ".jpg": "image/jpeg",
    ".mp3": "audio/mp3", ".wav": "audio/wav", ".m4a": "audio/m4a", ".aac": "audio/aac",
    ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/opus",
    ".aif": "audio/aiff", ".aiff": "audio/aiff", ".weba": "audio/webm",
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mov", ".webm": "video/webm",
    ".avi": "video/avi", ".wmv": "video/wmv", ".flv": "video/x-flv", ".3gp": "video/3gpp",
    ".mpg": "video/mpeg", ".mpeg": "video/mpeg",
    ".csv": "text/csv", ".tsv": "text/tab-separated-values", ".md": "text/markdown",
    ".txt": "text/plain", ".json": "application/json", ".py": "text/x-python",
    ".html": "text/html", ".htm": "text/html", ".xml": "application/xml", ".rtf": "application/rtf",
    **OFFICE_MIMES,
}
_ALIASES = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-ms-bmp": "image/bmp",
    "image/mpo": "image/jpeg",  # phone "multi-picture" JPEGs are plain JPEG to everyone else
    "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
    "audio/mpeg": "audio/mp3", "audio/x-flac": "audio/flac", "audio/x-aiff": "audio/aiff",
    "audio/mp4": "audio/m4a", "audio/x-m4a": "audio/m4a", "audio/x-aac": "audio/aac",
    "video/quicktime": "video/mov", "video/x-msvideo": "video/avi", "video/x-ms-wmv": "video/wmv",
    "application/csv": "text/csv", "text/x-csv": "text/csv", "text/xml": "application/xml",
    "text/rtf": "application/rtf",
}
_URL_SCHEMES = ("http", "https", "gs")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


class MediaError(ValueError):
    """A media input we will not send, with a one-sentence message meant for the user."""


# ----------------------------------------------------------------------------- type detection
def _normal(mime: str | None) -> str | None:
    if not mime:
        return None
    mime = mime.split(";")[0].strip().lower()
    return _ALIASES.get(mime, mime)


def _mime_from_name(name: str | None) -> str | None:
    if not name:
        return None
    suffix = os.path.splitext(urllib.parse.urlsplit(name).path if "://" in name else name)[1].lower()
    return _EXTENSIONS.get(suffix) or _normal(mimetypes.guess_type("x" + suffix)[0] if suffix else None)


def _magic(head: bytes) -> str | None:
    """MIME type from the first bytes of a file, for the formats Gemini reads."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[:4] == b"RIFF":
        return {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/avi"}.get(head[8:12])
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3"):
        return "audio/mp3"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/aac" if head[1] & 0x06 == 0 else "audio/mp3"  # ADTS AAC vs MPEG audio frame
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"):
            return "image/heic"
        if brand in (b"mif1", b"msf1"):
            return "image/heif"
        if brand == b"avif":
            return "image/avif"
        if brand in (b"M4A ", b"M4B "):
            return "audio/m4a"
        if brand == b"qt  ":
            return "video/mov"
        if brand.startswith(b"3g"):
            return "video/3gpp"
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video/wmv"
    if head.startswith(b"FLV"):
        return "video/x-flv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "video/mpeg"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "application/x-ole-storage"
    return None


def _zip_document(raw: bytes) -> str | None:
    """Office Open XML / OpenDocument type of a zip, from its member names."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            names = z.namelist()
            if "mimetype" in names:
                mime = z.read("mimetype").decode("ascii", "replace").strip()
                return mime if mime in OFFICE_MIMES.values() else None
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    for prefix, suffix in (("word/", ".docx"), ("xl/", ".xlsx"), ("ppt/", ".pptx")):
        if any(n.startswith(prefix) for n in names):
            return OFFICE_MIMES[suffix]
    return None


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut at the end of the sample
    return True


def sniff_mime(data: bytes, name: str | None = None) -> str | None:
    """Best MIME type for `data` (file `name` optional): bytes first, then the name; None if unknown."""
    head = bytes(data[:4096])
    by_name = _mime_from_name(name)
    found = _magic(head)
    if found in ("application/zip", "application/x-ole-storage"):
        if by_name in OFFICE_MIMES.values():
            return by_name
        return (_zip_document(bytes(data)) if found == "application/zip" else None) or found
    if found:
        return found
    pil_mime = _pillow_mime(data)
    if pil_mime:
        return pil_mime
    if _is_text(head):
        return by_name if by_name and (by_name.startswith("text/") or by_name in _DOCUMENT_MIMES) else "text/plain"
    return by_name


def _pillow_mime(data: bytes) -> str | None:
    """MIME type of any image format Pillow can identify (BMP, TIFF, ICO, PPM, ...)."""
    from PIL import Image, UnidentifiedImageError  # deferred: PIL
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return _normal(Image.MIME.get(fmt or "", "")) or f"image/{(fmt or 'unknown').lower()}"


def content_type(mime: str | None) -> str | None:
    """'image' | 'audio' | 'video' | 'document' for a MIME type, or None if Gemini cannot read it."""
    mime = _normal(mime) or ""
    major = mime.split("/")[0]
    if major in ("image", "audio", "video"):
        return major
    if mime.startswith("text/") or mime in _DOCUMENT_MIMES:
        return "document"
    return None


# ----------------------------------------------------------------------------- building parts
def _b64_size(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _check_size(nbytes: int, label: str, limit: int) -> None:
    if _b64_size(nbytes) > limit:
        raise MediaError(f"{label} is {human_size(nbytes)}, too large to send inline (inline data is "
                         f"limited to {human_size(limit)} per request, base64 included): pass a URL to it instead, "
                         "or make it smaller.")


def _unsupported(label: str, mime: str | None) -> MediaError:
    what = f"has type {mime}, which Gemini cannot read" if mime else "is of a type we could not recognise"
    return MediaError(f"{label} {what}: send an image, audio, video, PDF, CSV, text or Office file.")


def _wrong_kind(label: str, mime: str, kind: str) -> MediaError:
    return MediaError(f"{label} is {mime}, not an {kind}: pass it with --file instead of --image.")


def _checked_image(raw: bytes, label: str) -> tuple[bytes, str]:
    """Make sure Pillow can decode the image; convert formats Gemini does not read to PNG."""
    from PIL import Image, UnidentifiedImageError  # deferred: PIL
    bad = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt = img.format
            img.verify()  # chunk structure and checksums (PNG); cheap
        if fmt != "PNG":  # verify() barely checks JPEG & co: decode (JPEG at 1/8 scale) to be sure
            with Image.open(io.BytesIO(raw)) as img:
                img.draft("RGB", (256, 256))
                img.load()
    except bad:
        raise MediaError(f"{label} is not a readable image: Pillow could not decode it (the file is "
                         "corrupt, truncated or not an image).") from None
    mime = _normal(Image.MIME.get(fmt or "", "")) or "image/png"
    if mime in GEMINI_IMAGE_MIMES:
        return raw, mime
    with Image.open(io.BytesIO(raw)) as img:  # e.g. ICO, PPM, TGA, AVIF: send as PNG
        return _png_bytes(img), "image/png"


_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def png_safe(img: Any) -> Any:
    """`img` in a mode PNG can store: others (CMYK, F, LAB...) become RGB, or RGBA with alpha."""
    return img if img.mode in _PNG_MODES else img.convert("RGBA" if "A" in img.mode else "RGB")


def _png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    png_safe(img).save(buf, format="PNG")
    return buf.getvalue()


def _inline(raw: bytes, mime: str | None, label: str, kind: str | None, limit: int) -> dict:
    """Content part for raw bytes of a known (or sniffed) MIME type."""
    mime = _normal(mime)
    ctype = content_type(mime)
    if ctype is None:
        raise _unsupported(label, mime)
    if kind == "image" and ctype != "image":
        raise _wrong_kind(label, mime, "image")
    if ctype == "image" and mime not in ("image/heic", "image/heif"):  # Pillow cannot open HEIC
        raw, mime = _checked_image(raw, label)
    _check_size(len(raw), label, limit)
    return {"type": ctype, "data": base64.b64encode(raw).decode("ascii"), "mime_type": mime}


def _looks_like_url(text: str) -> bool:
    return "://" in text or re.match(r"(?i)(https?|gs)\W|www\.", text) is not None


def _url_part(url: str, kind: str | None, mime: str | None) -> dict:
    url = url.strip()
    shown = url if len(url) <= 80 else url[:77] + "..."
    try:
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
    except ValueError:  # e.g. an unclosed [IPv6] bracket
        raise MediaError(f"{shown!r} is not a valid URL: write it like https://example.com/picture.png.") from None
    if scheme and scheme not in _URL_SCHEMES and "://" in url:
        raise MediaError(f"{shown!r} is not a usable URL: only http://, https:// and gs:// addresses "
                         "can be sent.")
    if not scheme and url.lower().startswith("www."):
        raise MediaError(f"{shown!r} is not a complete URL: add https:// in front of it.")
    valid_host = bool(host) and (scheme == "gs" or "." in host or host == "localhost" or ":" in host)
    if scheme not in _URL_SCHEMES or "://" not in url or not valid_host or any(c.isspace() for c in url):
        raise MediaError(f"{shown!r} is not a valid URL: write it like https://example.com/picture.png.")
    mime = _normal(mime) or _mime_from_name(parts.path)
    if mime is None:
        if kind == "image":
            return {"type": "image", "uri": url}
        raise MediaError(f"Cannot tell what kind of file {shown!r} is from its name: use --image for a "
                         "picture, or a URL ending in an extension such as .pdf or .mp3.")
    ctype = content_type(mime)
    if ctype is None:
        raise _unsupported(f"The URL {shown!r}", mime)
    if kind == "image" and ctype != "image":
        raise _wrong_kind(f"The URL {shown!r}", mime, "image")
    return {"type": ctype, "uri": url, "mime_type": mime}


def _file_part(path: Path, shown: str, kind: str | None, mime: str | None, limit: int) -> dict:
    label = f"The file {shown!r}"
    if path.is_dir():
        raise MediaError(f"{label} is a directory: give the path of a single file.")
    try:
        size = path.stat().st_size
        _check_size(size, label, limit)  # before reading: never load a file we will refuse
        raw = path.read_bytes()
    except PermissionError:
        raise MediaError(f"{label} cannot be read (permission denied): check its permissions.") from None
    except OSError as exc:
        raise MediaError(f"{label} cannot be read ({exc.strerror or exc}): check the path.") from None
    if not raw:
        raise MediaError(f"{label} is empty: pass a file with content.")
    return _inline(raw, mime or sniff_mime(raw, path.name), label, kind, limit)


def _sdk_part(value: Any) -> dict | None:
    """A content part from an SDK content object (ImageContent, AudioContent, ...)."""
    ctype = getattr(value, "type", None)
    if ctype not in MEDIA_TYPES or not (getattr(value, "data", None) or getattr(value, "uri", None)):
        return None
    out = {"type": ctype}
    for key in ("data", "uri", "mime_type", "resolution"):
        if getattr(value, key, None) is not None:
            out[key] = getattr(value, key)
    return out


def _pil_image(value: Any) -> bool:
    module = sys.modules.get("PIL.Image")  # no PIL imported means it cannot be a PIL image
    return module is not None and isinstance(value, module.Image)


def media_part(value: Any, *, kind: str | None = None, user_ns: Mapping[str, Any] | None = None,
               mime_type: str | None = None, limit: int = INLINE_LIMIT) -> dict:
    """One Interactions content part (`{"type": "image"|"audio"|"video"|"document", ...}`).

    `value` is a file path, an http(s)/gs URL (sent as `uri`, never fetched), a PIL image (sent
    as PNG, or JPEG if it was read from a JPEG), bytes (type sniffed), an open binary file, a
    content part, or the name of a variable in `user_ns` holding any of those. `kind="image"`
    insists on an image; `"file"` or None accept any type Gemini reads. A name is looked up as a
    variable first, then as a file. Raises MediaError with one sentence on any problem.
    """
    if kind not in ("image", "file", None):
        raise ValueError(f"kind must be 'image', 'file' or None, not {kind!r}")
    return _part(value, kind, user_ns, mime_type, limit, label=None)


def _part(value: Any, kind: str | None, user_ns: Mapping[str, Any] | None, mime: str | None,
          limit: int, label: str | None) -> dict:
    noun = "an image" if kind == "image" else "a file"
    if isinstance(value, str) and label is None:
        text = value.strip()
        if not text:
            raise MediaError(f"No {'image' if kind == 'image' else 'file'} given: pass a file path, "
                             "a URL or a variable name.")
        if _looks_like_url(text):
            return _url_part(text, kind, mime)
        if user_ns is not None and text.isidentifier() and text in user_ns:
            return _part(user_ns[text], kind, None, mime, limit, label=f"The variable {text!r}")
        path = Path(text).expanduser()
        if path.exists():
            return _file_part(path, text, kind, mime, limit)
        if user_ns is not None and _DOTTED.fullmatch(text) and text.split(".")[0] in user_ns:
            obj = user_ns[text.split(".")[0]]
            try:
                for attr in text.split(".")[1:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                pass
            else:
                return _part(obj, kind, None, mime, limit, label=f"The expression {text!r}")
        if text.isidentifier():
            raise MediaError(f"No file or variable named {text!r}: check the spelling, or give the "
                             "path of a file.")
        raise MediaError(f"File not found: {text!r} (relative to {os.getcwd()}): check the path.")

    label = label or "The value given"
    if isinstance(value, (str, os.PathLike)):  # a variable holding a path or URL
        text = os.fspath(value)
        if isinstance(text, str) and _looks_like_url(text.strip()):
            return _url_part(text.strip(), kind, mime)
        path = Path(text).expanduser()
        if not path.exists():
            raise MediaError(f"{label} holds the path {str(text)!r}, but no such file exists "
                             f"(relative to {os.getcwd()}).")
        return _file_part(path, str(text), kind, mime, limit)
    if _pil_image(value):
        fmt = "JPEG" if value.format == "JPEG" and value.mode in ("RGB", "L") else "PNG"
        buf = io.BytesIO()
        if fmt == "JPEG":
            value.save(buf, format="JPEG", quality=95)
        else:
            buf.write(_png_bytes(value))
        _check_size(buf.tell(), f"{label} ({value.width}x{value.height} image)", limit)
        return {"type": "image", "data": base64.b64encode(buf.getbuffer()).decode("ascii"),
                "mime_type": f"image/{fmt.lower()}"}
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if not raw:
            raise MediaError(f"{label} is empty: pass non-empty bytes.")
        _check_size(len(raw), label, limit)
        return _inline(raw, mime or sniff_mime(raw), label, kind, limit)
    if isinstance(value, Mapping) and value.get("type") in MEDIA_TYPES:
        if kind == "image" and value["type"] != "image":
            raise _wrong_kind(label, value.get("mime_type") or value["type"], "image")
        if not (value.get("data") or value.get("uri")):
            raise MediaError(f"{label} is a {value['type']} part with neither 'data' nor 'uri': add one.")
        if value.get("data"):
            _check_size(len(value["data"]) * 3 // 4, label, limit)
        return dict(value)
    sdk = _sdk_part(value)
    if sdk is not None:
        return _part(sdk, kind, None, mime, limit, label)
    if hasattr(value, "read"):  # an open binary file or BytesIO
        try:
            raw = value.read(limit + 1)
        except (OSError, ValueError) as exc:
            raise MediaError(f"{label} is a file object that cannot be read ({exc}).") from None
        if isinstance(raw, str):
            raise MediaError(f"{label} is a file opened in text mode: open it with 'rb'.")
        return _part(raw, kind, None, mime, limit, label)
    article = "an" if type(value).__name__[:1].lower() in "aeiou" else "a"
    raise MediaError(f"{label} is {article} {type(value).__name__}, not {noun}: use a file path, a URL, "
                     "a PIL image or bytes.")


def check_inline_size(parts: Iterable[Mapping[str, Any]], limit: int = INLINE_LIMIT) -> None:
    """Raise MediaError if the inline (base64) data of all parts together exceeds `limit`."""
    total = sum(len(p.get("data") or "") for p in parts if isinstance(p, Mapping))
    if total > limit:
        raise MediaError(f"The inline media add up to {human_size(total)} of base64, over the "
                         f"{human_size(limit)} limit for one request: pass some of them as URLs, or send fewer or "
                         "smaller files.")


def media_parts(values: Iterable[Any], *, kind: str | None = None,
                user_ns: Mapping[str, Any] | None = None, limit: int = INLINE_LIMIT) -> list[dict]:
    """`media_part` for each value, then a check that the request stays under `limit` in total."""
    parts = [media_part(v, kind=kind, user_ns=user_ns, limit=limit) for v in values]
    check_inline_size(parts, limit)
    return parts


def is_media_value(value: Any) -> bool:
    """True for values that `{name}` in a prompt should turn into a media part, not text.

    PIL images, image/audio/video/PDF bytes, and media content parts (dicts or SDK objects).
    Strings and paths stay text: `{path}` in a prompt means the path's text.
    """
    if _pil_image(value):
        return True
    if isinstance(value, (bytes, bytearray, memoryview)):
        mime = _magic(bytes(value[:64]))
        return content_type(mime) in ("image", "audio", "video") or mime == "application/pdf"
    if isinstance(value, Mapping):
        return value.get("type") in MEDIA_TYPES and bool(value.get("data") or value.get("uri"))
    return not isinstance(value, (str, os.PathLike)) and _sdk_part(value) is not None


# ----------------------------------------------------------------------------- what was sent
# Shown above the answer (display.py), saved in the notebook: a thumbnail THUMB_HEIGHT css px
# high per image (drawn at twice that for sharp high-DPI screens), a chip (name, type, size)
# per other file or link. Images over THUMB_MAX_PIXELS get a chip: never decode a hostile one.
THUMB_HEIGHT = 96
THUMB_MAX_PIXELS = 40_000_000
_KIND_WORDS = {"application/pdf": "PDF", "text/plain": "text", "text/csv": "CSV",
               "text/markdown": "Markdown", "text/html": "HTML", "text/x-python": "Python",
               "application/json": "JSON", "application/xml": "XML",
               **{mime: ext[1:].upper() for ext, mime in OFFICE_MIMES.items()}}
_CHIP = ("display:inline-block;vertical-align:top;margin:0 8px 6px 0;padding:4px 10px;"
         "border:1px solid #c8c8c8;border-radius:12px;font-size:12px;line-height:18px")
_FIGURE = "display:inline-block;vertical-align:top;margin:0 8px 6px 0;text-align:center"
_CAPTION = "display:block;font-size:11px;color:#666;max-width:288px;overflow-wrap:anywhere"


def _label_of(value: Any) -> str:
    """How a --image/--file value is named in the preview: a file's name, a URL's last part,
    a variable's name."""
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value).strip()
        if _looks_like_url(text):
            tail = urllib.parse.urlsplit(text).path.rstrip("/").rsplit("/", 1)[-1]
            return tail or text
        return Path(text).name or text
    return type(value).__name__


def sent_media(request: Any) -> list:
    """(name, part) of each medium `request` sends, in order: the --image and --file values by
    the name they were given, then the `{var}` media of the prompt ("in the prompt"). With
    --context the earlier cells' media come first and cannot be told apart: [] then."""
    if getattr(request, "context", None):
        return []
    media = [p for p in getattr(request, "parts", None) or [] if isinstance(p, Mapping)]
    names = [_label_of(v) for v in [*(request.images or []), *(request.files or [])]]
    return [(names[i] if i < len(names) else "in the prompt", part) for i, part in enumerate(media)]


def _kind(mime: str | None, ctype: str | None) -> str:
    """'JPEG image', 'PDF', 'MP3 audio', 'CSV': a short name for a MIME type."""
    mime = _normal(mime) or ""
    if mime in _KIND_WORDS:
        return _KIND_WORDS[mime]
    sub = mime.split("/")[-1].removeprefix("x-")
    if ctype in ("image", "audio", "video"):
        return f"{sub.upper()} {ctype}" if sub and sub != ctype else ctype
    return mime or ctype or "file"


def _thumbnail(data: str) -> tuple[str, str, tuple[int, int]] | None:
    """(MIME type, base64, (width, height)) of a small copy of an inline image; None when it
    cannot (or should not) be decoded."""
    from PIL import Image, UnidentifiedImageError  # deferred: PIL
    try:
        with Image.open(io.BytesIO(binascii.a2b_base64(data))) as img:
            size = img.size
            if size[0] * size[1] > THUMB_MAX_PIXELS:
                return None
            img.draft("RGB", (4 * THUMB_HEIGHT, 2 * THUMB_HEIGHT))  # JPEG: decode at a fraction
            img.thumbnail((8 * THUMB_HEIGHT, 2 * THUMB_HEIGHT))  # up to 4:1 at full height
            alpha = img.mode in ("RGBA", "LA", "P", "PA")
            small = png_safe(img) if alpha else img.convert("RGB")
            buf = io.BytesIO()
            small.save(buf, format="PNG" if alpha else "JPEG", quality=85)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, binascii.Error,
            Image.DecompressionBombError):
        return None
    return ("image/png" if alpha else "image/jpeg", base64.b64encode(buf.getvalue()).decode("ascii"),
            size)


def _sent_item(name: str, part: Mapping[str, Any]) -> tuple[str, str]:
    """(HTML, plain text) of one medium: a thumbnail for an inline image, else a chip."""
    ctype, mime, data = part.get("type"), part.get("mime_type"), part.get("data") or ""
    kind = _kind(mime, ctype)
    if not data:
        facts = f"{kind}, by URL"
        return (f'<span style="{_CHIP}" title="{html.escape(str(part.get("uri")))}">'
                f"{html.escape(name)} · {html.escape(kind)} · link</span>", f"{name} ({facts})")
    size = human_size(len(data) * 3 // 4 - data[-2:].count("="))
    thumb = _thumbnail(data) if ctype == "image" else None
    if thumb is None:
        return (f'<span style="{_CHIP}">{html.escape(name)} · {html.escape(kind)} · {size}</span>',
                f"{name} ({kind}, {size})")
    thumb_mime, thumb_data, (width, height) = thumb
    facts = f"{kind}, {width}×{height}, {size}"
    shown = min(THUMB_HEIGHT, height)  # a small image is not blown up
    return (f'<span style="{_FIGURE}"><img src="data:{thumb_mime};base64,{thumb_data}" '
            f'height="{shown}" alt="{html.escape(name)}" title="{html.escape(f"{name} · {facts}")}" '
            f'style="height:{shown}px;width:auto;border:1px solid #ddd;border-radius:4px">'
            f'<span style="{_CAPTION}">{html.escape(name)} · {size}</span></span>', f"{name} ({facts})")


def sent_bundle(request: Any) -> dict | None:
    """The output shown above the answer: what the cell sent besides its text (a thumbnail per
    image, a chip per other file), as HTML the saved notebook keeps and a line of text; None
    when it sent no media."""
    items = [_sent_item(name, part) for name, part in sent_media(request)]
    if not items:
        return None
    return {"text/html": '<div class="gemini-sent">' + "".join(h for h, _ in items) + "</div>",
            "text/plain": "Sent: " + "; ".join(t for _, t in items)}
