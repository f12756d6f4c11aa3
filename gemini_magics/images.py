"""Images coming back from Gemini: decode, display, save, and the request's image config.

Generated images arrive as base64 PNG/JPEG. We decode them once with Pillow for the user
(`.images`), but display and save reuse the original encoded bytes whenever we still have the
content part, so a 4K image is never re-encoded just to be shown or written to disk.
The aspect-ratio and size vocabularies live here so the client and the local server agree.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from PIL import Image, UnidentifiedImageError

from .catalog import human_size, normalize_aspect_ratio, normalize_image_size
from .media import png_safe

# The protocol's image_config / response_format vocabularies (google-genai 3.4 ImageConfig).
# Formats a notebook front end shows inline and that we can pass through without re-encoding.
_DISPLAY_MIMES = {"image/png": "PNG", "image/jpeg": "JPEG"}
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                 ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
_FORMAT_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif",
                 "BMP": "image/bmp", "TIFF": "image/tiff"}


class ImageError(ValueError):
    """Bad image input or output, with a one-sentence message meant for the user."""


# ----------------------------------------------------------------------------- image config
def image_config(aspect: str | None = None, size: str | int | None = None) -> dict:
    """The `generation_config["image_config"]` dict for a request; {} when both are None."""
    config = {}
    try:
        if aspect is not None:
            config["aspect_ratio"] = normalize_aspect_ratio(aspect)
        if size is not None:
            config["image_size"] = normalize_image_size(size)
    except ValueError as exc:
        raise ImageError(str(exc)) from None
    return config


def image_response_format(aspect: str | None = None, size: str | int | None = None,
                          mime_type: str | None = None) -> dict:
    """The same settings as a `response_format` entry: the SDK marks `image_config` deprecated."""
    out = {"type": "image", **image_config(aspect, size)}
    if mime_type is not None:
        if str(mime_type).lower() not in _DISPLAY_MIMES:
            raise ImageError(f"Unsupported image mime type {mime_type!r}: use image/png or image/jpeg.")
        out["mime_type"] = str(mime_type).lower()
    return out


# ----------------------------------------------------------------------------- decoding
def _field(part: Any, name: str) -> Any:
    """Read a field from a dict or from an SDK model (ImageContent, ImageDelta, ...)."""
    if isinstance(part, Mapping):
        return part.get(name)
    return getattr(part, name, None)


def _is_part(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        not isinstance(value, Image.Image) and hasattr(value, "data") and hasattr(value, "mime_type"))


def _b64_bytes(part: Any) -> bytes:
    """The raw bytes of an inline image part; ImageError if there is no inline data."""
    data = _field(part, "data")
    if not data:
        uri = _field(part, "uri")
        if uri:
            raise ImageError(f"This image was returned as a link ({uri}), not inline data: "
                             "download it from that address to open it.")
        raise ImageError("This content has no image data: pass an image part or delta with a "
                         "base64 'data' field.")
    try:
        # a2b_base64 reads an ASCII str in place; base64.b64decode would copy it to bytes first.
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError, TypeError):
        raise ImageError("The image data is not valid base64: the response may be truncated.") from None


class _Base64File(io.RawIOBase):
    """A read-only, seekable binary file over base64 text, decoded a block at a time.

    Base64 maps every 3 bytes to 4 characters, so byte offset k lives at character 4*(k//3):
    Pillow can read and seek as in a file while the whole encoded image never exists as bytes.
    """

    def __init__(self, text: str | bytes):
        self._text, self._pos = text, 0
        tail = text[-2:] if isinstance(text, str) else text[-2:].decode("ascii", "replace")
        pad = len(tail) - len(tail.rstrip("="))  # not text.rstrip(): that copies the whole string
        self._size = len(text) // 4 * 3 - pad

    def close(self) -> None:
        self._text = ""  # the image keeps its fp: do not let it pin the base64 text
        super().close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        end = min(self._size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        first = self._pos // 3
        chunk = binascii.a2b_base64(self._text[4 * first: 4 * ((end + 2) // 3)])
        data = chunk[self._pos - 3 * first: end - 3 * first]
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def _clean_b64(data: Any) -> bool:
    """True when `data` is unbroken base64 text, which _Base64File can read in place."""
    if not isinstance(data, (str, bytes)) or len(data) % 4:
        return False
    return not any(c in data for c in (("\n", "\r", " ", "-", "_") if isinstance(data, str)
                                       else (b"\n", b"\r", b" ", b"-", b"_")))


def decode_image(part_or_delta: Any) -> Image.Image:
    """Decode an image content part or stream delta (dict or SDK object) into a loaded PIL image.

    Pillow reads straight from the base64 text through a decoding file object, so the peak memory
    is the pixels plus a few blocks: the encoded image is never held as a second full copy.
    """
    data = _field(part_or_delta, "data")
    mime = _field(part_or_delta, "mime_type") or "image"
    if _clean_b64(data):
        source, size = _Base64File(data), len(data) // 4 * 3
    else:  # line-wrapped or odd base64: decode it in one go
        raw = _b64_bytes(part_or_delta)
        source, size = io.BytesIO(raw), len(raw)
    try:
        with source:
            img = Image.open(source)
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            binascii.Error, Image.DecompressionBombError):
        raise ImageError(f"The image data ({mime}, {human_size(size)}) could not be decoded by "
                         "Pillow: it is corrupt, truncated or in an unsupported format.") from None
    return img


# ----------------------------------------------------------------------------- display
def _describe(width: int, height: int, fmt: str) -> str:
    return f"<{fmt} image {width}x{height}>"


def _encode(img: Image.Image, fmt: str | None = None) -> tuple[io.BytesIO, str]:
    """Encode a PIL image for display: JPEG stays JPEG (photos), everything else becomes PNG."""
    if fmt is None:
        fmt = "JPEG" if img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK") else "PNG"
    img = _storable(img, fmt)
    buf = io.BytesIO()
    # compress_level 1: several times faster than the default 6 on large images, ~10-30 % bigger.
    options = {"compress_level": 1} if fmt == "PNG" else {"quality": 92}
    img.save(buf, format=fmt, **options)
    return buf, _FORMAT_MIMES[fmt]


def _storable(img: Image.Image, fmt: str) -> Image.Image:
    """`img` in a mode the `fmt` file can store: JPEG has no alpha, PNG no CMYK & co."""
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        return flatten_to_rgb(img)
    return png_safe(img) if fmt == "PNG" else img


def flatten_to_rgb(img: Image.Image) -> Image.Image:
    """RGB version of an image, with any transparency laid over white (JPEG has no alpha; black
    would show where the image was transparent)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _header_size(data: str, mime: str) -> tuple[int, int]:
    """(width, height) from the first few KB of base64: a 30 MB PNG is never decoded to show it."""
    for chars in (8192, 262144, None):  # JPEG headers can sit after a long EXIF block
        try:
            head = binascii.a2b_base64(data[:chars] if chars else data)
        except (binascii.Error, ValueError):
            head = b""
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        try:
            with Image.open(io.BytesIO(head)) as header:  # parses the header only
                return header.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            if chars is None or len(head) < chars * 3 // 4 - 3:
                break  # we already had all the data
    raise ImageError(f"The {mime} image data could not be read by Pillow: it is corrupt, truncated or "
                     "not really an image.")


# Generated images are shown at most this wide in a notebook (the output's metadata); the
# saved PNG/JPEG and `result.image` keep every pixel.
DISPLAY_WIDTH = 512


def display_metadata(bundle: Mapping[str, Any]) -> dict | None:
    """`{"image/png": {"width": 512}}` for an image bundle wider than DISPLAY_WIDTH (None
    otherwise): a 2K picture is shown at a readable width, not across the whole screen."""
    for mime in _DISPLAY_MIMES:
        data = bundle.get(mime)
        if isinstance(data, str):
            try:
                width, _ = _header_size(data, mime)
            except ImageError:
                return None
            return {mime: {"width": DISPLAY_WIDTH}} if width > DISPLAY_WIDTH else None
    return None


def image_mimebundle(img: Any) -> dict:
    """`{"image/png"|"image/jpeg": base64, "text/plain": ...}` for `display(bundle, raw=True)`.

    Accepts a PIL image (encoded here) or an image content part/delta whose PNG/JPEG data is
    passed through untouched: no decode, no re-encode, and the saved .ipynb holds the original.
    """
    if _is_part(img):
        mime = (_field(img, "mime_type") or "").lower()
        if mime in _DISPLAY_MIMES and _field(img, "data"):
            data = _field(img, "data")
            if isinstance(data, (bytes, bytearray)):
                data = bytes(data).decode("ascii")
            if "\n" in data:
                data = data.replace("\n", "")
            width, height = _header_size(data, mime)
            return {mime: data, "text/plain": _describe(width, height, _DISPLAY_MIMES[mime])}
        img = decode_image(img)  # another format (webp, gif...): show it as PNG
    if not isinstance(img, Image.Image):
        raise ImageError(f"Cannot display a {type(img).__name__} as an image: pass a PIL image or an "
                         "image content part.")
    buf, mime = _encode(img)
    data = base64.b64encode(buf.getbuffer()).decode("ascii")
    return {mime: data, "text/plain": _describe(img.width, img.height, _DISPLAY_MIMES[mime])}


# ----------------------------------------------------------------------------- saving
def _targets(count: int, path_or_dir: str | os.PathLike, stem: str, suffix: str) -> list[Path]:
    """Where `count` images go: numbered files in a directory, or a file and numbered siblings."""
    target = Path(path_or_dir).expanduser()
    is_dir = target.is_dir() or str(path_or_dir).endswith(("/", os.sep)) or not target.suffix
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
        # Continue after the highest existing number so re-running a cell never overwrites.
        taken = [p.stem[len(stem) + 1:] for p in target.glob(f"{stem}_*")]
        start = max([int(n) for n in taken if n.isdigit()], default=0) + 1
        return [target / f"{stem}_{start + i}{suffix}" for i in range(count)]
    target.parent.mkdir(parents=True, exist_ok=True)
    if count == 1:
        return [target]
    return [target.with_name(f"{target.stem}_{i + 1}{target.suffix}") for i in range(count)]


def save_images(images: Iterable[Any], path_or_dir: str | os.PathLike, stem: str = "gemini") -> list[Path]:
    """Write images (PIL images or content parts) and return the paths written.

    A directory (existing, ending in '/', or a name without a suffix) receives `stem_N.png`
    files numbered after any already there; a file path receives the single image, or
    `name_1.ext`, `name_2.ext`, ... when there are several. Parts whose format matches the
    file suffix are written byte for byte.
    """
    items = list(images)
    if not items:
        return []
    target = Path(path_or_dir).expanduser()
    suffix = target.suffix.lower()
    if suffix and not target.is_dir():
        if suffix not in _SAVE_FORMATS:
            raise ImageError(f"Cannot save images as {suffix!r} files: use a .png, .jpg or .webp "
                             "file name, or a directory.")
    else:
        suffix = ".png"
        first_mime = (_field(items[0], "mime_type") or "").lower() if _is_part(items[0]) else ""
        if first_mime == "image/jpeg" or (not first_mime and getattr(items[0], "format", None) == "JPEG"):
            suffix = ".jpg"
    fmt = _SAVE_FORMATS[suffix]
    try:
        paths = _targets(len(items), path_or_dir, stem, suffix)
        for item, path in zip(items, paths):
            if _is_part(item) and (_field(item, "mime_type") or "").lower() == _FORMAT_MIMES[fmt]:
                path.write_bytes(_b64_bytes(item))
                continue
            img = decode_image(item) if _is_part(item) else item
            if not isinstance(img, Image.Image):
                raise ImageError(f"Cannot save a {type(img).__name__} as an image: pass PIL images "
                                 "or image content parts.")
            _storable(img, fmt).save(path, format=fmt)
    except OSError as exc:
        raise ImageError(f"Cannot write images to {str(path_or_dir)!r}: {exc.strerror or exc}.") from None
    return paths
