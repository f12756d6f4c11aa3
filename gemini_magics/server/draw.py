"""Offline stand-in for an image model: draw a picture from the prompt with Pillow.

No text-to-image weights are available offline, so the local server paints a deterministic
scene (sky, sun, skyline, mountains, sea, trees or shapes picked from the prompt's words and a
hash of it) and stamps it "OFFLINE RENDERING" with the prompt, so nobody mistakes it for a real
generation. Editing applies a deterministic transform chosen from the instruction's words.
Shapes are placed in relative coordinates, so one prompt gives the same picture at every size;
the only full-size buffer is the canvas itself, which keeps 4K renders fast and frugal.

Prompts and images come from the network, so the work is bounded whatever they hold: the words
that steer a picture are read from the first PROMPT_CHARS of the prompt (a 30 MB prompt once
held the GIL for 44 s in its word searches), and an image to edit is checked against
_MAX_SOURCE_PIXELS from its header before any pixel is decoded, then shrunk with cheap box
reductions before the final filter.
"""
from __future__ import annotations

import hashlib
import io
import random
import re
from typing import Optional

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo

from ..catalog import normalize_aspect_ratio, normalize_image_size

__all__ = ["render_image", "image_dimensions", "RenderError", "PROMPT_CHARS"]

# Long side in pixels per size name. Gemini's own tables differ slightly per model and keep the
# pixel count near 1 MP per "1K"; we keep the long side exact instead, which bounds memory.
LONG_SIDE = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}
_MIMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}
_MAX_SOURCE_PIXELS = 40_000_000  # larger edit sources are refused rather than decoded
_SOURCE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # the only decoders an edit source reaches
PROMPT_CHARS = 4000  # the words that choose the scene or the edit are read from this much
_Z_RLE = 3  # zlib.Z_RLE, passed to Pillow's PNG encoder as compress_type
_SOFTWARE = "gemini-magics offline renderer (no image model was used)"

_WORDS = {
    "city": ("city", "skyline", "building", "skyscraper", "town", "street", "urban", "downtown",
             "metropolis", "futuristic", "城市", "城", "大樓", "建筑", "建築"),
    "mountain": ("mountain", "hill", "peak", "alps", "volcano", "cliff", "山"),
    "sea": ("sea", "ocean", "beach", "lake", "water", "wave", "river", "harbor", "harbour", "海", "湖", "河"),
    "tree": ("forest", "tree", "wood", "jungle", "park", "garden", "pine", "森林", "樹", "树"),
    "sunset": ("sunset", "dusk", "sunrise", "dawn", "evening", "golden hour", "twilight",
               "日落", "黃昏", "黄昏", "日出"),
    "night": ("night", "moon", "star", "dark", "midnight", "galaxy", "space", "夜", "月", "星"),
}
_COLOURS = {
    "red": (210, 50, 50), "orange": (240, 140, 40), "yellow": (245, 215, 60), "gold": (230, 180, 50),
    "green": (60, 170, 80), "teal": (40, 160, 160), "cyan": (60, 200, 220), "blue": (50, 100, 210),
    "purple": (140, 70, 190), "violet": (150, 90, 210), "pink": (235, 120, 170),
    "brown": (130, 85, 50), "white": (240, 240, 240), "black": (25, 25, 30), "grey": (128, 128, 128),
    "gray": (128, 128, 128), "silver": (190, 195, 200),
}
_SKIES = {
    "sunset": [(40, 30, 90), (200, 70, 110), (250, 150, 60), (255, 210, 120)],
    "night": [(5, 8, 25), (15, 25, 60), (35, 50, 95)],
    "day": [(60, 120, 210), (130, 180, 235), (205, 228, 250)],
}


class RenderError(ValueError):
    """A request the offline renderer cannot honour, in one sentence the server returns as a 400."""


def _config(aspect_ratio: str | None, image_size: str | None) -> tuple[str | None, str | None]:
    """The normalised (aspect ratio, image size); a value outside the protocol's lists raises
    RenderError."""
    try:
        return normalize_aspect_ratio(aspect_ratio), normalize_image_size(image_size)
    except ValueError as exc:
        raise RenderError(str(exc)) from None


def image_dimensions(aspect_ratio: str | None = None, image_size: str | None = None) -> tuple[int, int]:
    """(width, height) for an aspect ratio and size: the long side is 512/1024/2048/4096 px.

    The short side is rounded to a multiple of 8 (what image codecs and models like).
    Raises RenderError (a ValueError) for a value outside the protocol's lists.
    """
    aspect, size = _config(aspect_ratio, image_size)
    aspect = aspect or "1:1"
    long_side = LONG_SIDE[size or "1K"]
    a, b = (int(x) for x in aspect.split(":"))
    short = max(8, round(long_side * min(a, b) / max(a, b) / 8) * 8)
    return (long_side, short) if a >= b else (short, long_side)


def render_image(prompt: str, *, aspect_ratio: str | None = None, image_size: str | None = None,
                 mime_type: str = "image/png", source: bytes | None = None) -> tuple[bytes, str]:
    """Draw (or, with `source`, edit) an image for `prompt`; returns (encoded bytes, mime type).

    Same arguments, same bytes. Without `aspect_ratio`, a new image is square and an edit keeps
    the source's proportions; `image_size` defaults to 1K. Bad values raise RenderError
    (a ValueError) with one sentence the server can return as a 400.
    """
    fmt = _MIMES.get(str(mime_type).lower())
    if fmt is None:
        raise RenderError(f"Unsupported image mime_type {mime_type!r}: the offline renderer writes "
                         "image/png or image/jpeg.")
    prompt = str(prompt or "").strip()
    words = prompt[:PROMPT_CHARS]  # what the scene, the edit and the stamp read
    if source is None:
        width, height = image_dimensions(aspect_ratio, image_size)
        img = _draw_scene(prompt, words, width, height)
        _stamp(img, "OFFLINE RENDERING (no image model)", words)
    else:
        img = _edit(source, words, aspect_ratio, image_size)
        _stamp(img, "OFFLINE EDIT (no image model)", words)
    out = io.BytesIO()
    if fmt == "PNG":
        info = PngInfo()
        info.add_text("Software", _SOFTWARE)
        info.add_text("Description", prompt[:1000])
        # zlib's run-length strategy suits flat drawings: as fast as level 1, files 3x smaller.
        img.save(out, format="PNG", pnginfo=info, compress_level=6, compress_type=_Z_RLE)
    else:
        img.save(out, format="JPEG", quality=90, comment=_SOFTWARE.encode())
    return out.getvalue(), "image/png" if fmt == "PNG" else "image/jpeg"


# ----------------------------------------------------------------------------- scene
def _has(prompt: str, key: str) -> bool:
    low = prompt.lower()
    return any((re.search(rf"\b{re.escape(w)}", low) if w.isascii() else w in prompt) for w in _WORDS[key])


def _rng(*parts: str | bytes) -> random.Random:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return random.Random(digest.digest())


def _gradient(stops: list[tuple[int, int, int]], width: int, height: int) -> Image.Image:
    """A vertical gradient through `stops`, built as a 1x256 strip and stretched (one allocation)."""
    strip = Image.new("RGB", (1, 256))
    n = len(stops) - 1
    pixels = []
    for y in range(256):
        t = y / 255 * n
        i = min(int(t), n - 1)
        f = t - i
        pixels.append(tuple(round(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f) for c in range(3)))
    strip.putdata(pixels)
    # Stretch vertically, then copy columns: same pixels as one bilinear resize, ~3x faster at 4K.
    return strip.resize((1, height), Image.Resampling.BILINEAR).resize((width, height), Image.Resampling.NEAREST)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(round(a[i] + (b[i] - a[i]) * t) for i in range(3))


def _draw_scene(seed: str, prompt: str, width: int, height: int) -> Image.Image:
    """The scene for `prompt` (the words read), its randomness seeded by `seed` (all of it)."""
    rng = _rng(seed)
    mood = "sunset" if _has(prompt, "sunset") else "night" if _has(prompt, "night") else "day"
    accents = [rgb for name, rgb in _COLOURS.items() if re.search(rf"\b{name}\b", prompt.lower())]
    features = [k for k in ("mountain", "sea", "city", "tree") if _has(prompt, k)]
    sky = list(_SKIES[mood])
    if not features and not accents and mood == "day":
        # Nothing recognisable: an abstract palette from the prompt's hash.
        sky = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(3)]
    img = _gradient(sky, width, height)
    draw = ImageDraw.Draw(img)
    W, H = width, height
    unit = max(1, min(W, H) // 256)  # stroke scale so detail looks the same at every size
    horizon = H * (0.62 + rng.random() * 0.12) if features else H

    if mood == "night":
        for _ in range(160):
            x, y, r = rng.random() * W, rng.random() * horizon * 0.8, unit * (0.5 + rng.random())
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(235, 235, 210))
    orb_r = min(W, H) * (0.07 + rng.random() * 0.05)
    orb_x, orb_y = W * (0.15 + rng.random() * 0.7), min(horizon, H) * (0.25 + rng.random() * 0.35)
    orb = {"sunset": (255, 200, 90), "night": (240, 240, 225), "day": (255, 245, 200)}[mood]
    draw.ellipse((orb_x - orb_r, orb_y - orb_r, orb_x + orb_r, orb_y + orb_r), fill=orb)

    ground = _mix(sky[-1], (20, 20, 30), 0.7)
    if "mountain" in features:
        for layer in range(2):
            shade = _mix(ground, sky[-1], 0.45 - 0.25 * layer)
            points, x = [(0, horizon)], 0.0
            while x < W:
                x += W * (0.08 + rng.random() * 0.14)
                points.append((x, horizon - H * (0.12 + rng.random() * 0.28) / (1 + layer)))
            points += [(W, horizon), (W, H), (0, H)]
            draw.polygon(points, fill=shade)
    if "sea" in features:
        water = _mix((30, 90, 150), sky[-1], 0.35)
        draw.rectangle((0, horizon, W, H), fill=water)
        for i in range(28):
            y = horizon + (H - horizon) * (i + rng.random()) / 28
            x = rng.random() * W
            draw.line((x, y, x + W * (0.05 + rng.random() * 0.2), y), fill=_mix(water, orb, 0.4), width=unit)
    elif features:
        draw.rectangle((0, horizon, W, H), fill=ground)
    if "city" in features:
        _draw_city(draw, rng, (W, H), horizon, mood, sky[-1], accents[0] if accents else None)
    if "tree" in features:
        for _ in range(40):
            tx, th = rng.random() * W, H * (0.08 + rng.random() * 0.15)
            ty = horizon + (H - horizon) * rng.random() * 0.6
            green = _mix((30, 110, 50), ground, rng.random() * 0.4)
            draw.polygon(((tx, ty - th), (tx - th * 0.3, ty), (tx + th * 0.3, ty)), fill=green)
    if not features:
        palette = accents or [tuple(rng.randrange(256) for _ in range(3)) for _ in range(4)]
        for _ in range(18):
            cx, cy, r = rng.random() * W, rng.random() * H, min(W, H) * (0.04 + rng.random() * 0.18)
            colour = palette[rng.randrange(len(palette))]
            kind = rng.randrange(3)
            if kind == 0:
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
            elif kind == 1:
                draw.rectangle((cx - r, cy - r * 0.6, cx + r, cy + r * 0.6), fill=colour)
            else:
                draw.polygon(((cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)), fill=colour)
    return img


def _draw_city(draw: ImageDraw.ImageDraw, rng: random.Random, size: tuple[int, int],
               horizon: float, mood: str, sky_low: tuple, accent: Optional[tuple]) -> None:
    """A skyline of lit windows standing on the horizon (the scene's randomness, in order)."""
    W, H = size
    unit = max(1, min(W, H) // 256)
    lit = (255, 220, 120) if mood != "day" else (180, 210, 235)
    body = _mix((25, 25, 40), sky_low, 0.15 if mood != "day" else 0.35)
    x = 0.0
    while x < W:
        bw = W * (0.035 + rng.random() * 0.06)
        top = horizon - H * (0.12 + rng.random() * 0.45)
        shade = _mix(body, accent, 0.3) if accent and rng.random() < 0.3 else body
        draw.rectangle((x, top, x + bw, horizon), fill=shade)
        if rng.random() < 0.3:  # spire
            draw.line((x + bw / 2, top, x + bw / 2, top - H * 0.05), fill=shade, width=2 * unit)
        win, gap = max(unit, bw / 9), max(unit, bw / 9)
        y = top + gap
        while y + win < horizon - gap:
            wx = x + gap
            while wx + win < x + bw - gap / 2:
                if rng.random() < 0.45:
                    draw.rectangle((wx, y, wx + win, y + win), fill=lit)
                wx += win + gap
            y += win + gap * 1.5
        x += bw + W * rng.random() * 0.01


# ----------------------------------------------------------------------------- editing
def _on_white(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white (an edit is drawn and saved opaque)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def _edit(source: bytes, instruction: str, aspect_ratio: str | None, image_size: str | None) -> Image.Image:
    aspect, size = _config(aspect_ratio, image_size)
    long_side = LONG_SIDE[size or "1K"]
    try:
        src = Image.open(io.BytesIO(source), formats=_SOURCE_FORMATS)  # reads the header only
        if src.width * src.height > _MAX_SOURCE_PIXELS:
            raise RenderError(f"The image to edit is {src.width}x{src.height} pixels, too large to edit "
                              f"offline: send one under {_MAX_SOURCE_PIXELS // 1_000_000} megapixels.")
        src.draft("RGB", (long_side, long_side))  # JPEG: decode at reduced scale, saves memory
        img = _on_white(ImageOps.exif_transpose(src))
        img = img.reduce(max(1, max(img.size) // (2 * long_side)))  # a cheap box filter first
    except RenderError:
        raise
    except Exception:  # noqa: BLE001 - Pillow's plugins raise many kinds of error on bad bytes
        raise RenderError("The image to edit could not be decoded: send a valid PNG, JPEG, WebP or "
                          "GIF image.") from None
    if aspect:
        size = image_dimensions(aspect, image_size)
        img = ImageOps.fit(img, size, Image.Resampling.LANCZOS)
    else:
        scale = long_side / max(img.size)
        size = tuple(max(8, round(v * scale / 8) * 8) for v in img.size)
        img = img.resize(size, Image.Resampling.LANCZOS)

    low = instruction.lower()
    rng = _rng("edit", instruction, source[:4096], str(len(source)))
    applied = False

    def wants(*words: str) -> bool:
        return any(re.search(rf"\b{re.escape(w)}", low) for w in words)

    if wants("grayscale", "greyscale", "black and white", "monochrome", "b&w"):
        img, applied = ImageOps.grayscale(img).convert("RGB"), True
    if wants("sepia", "vintage", "old photo", "retro"):
        img, applied = ImageOps.colorize(ImageOps.grayscale(img), (60, 35, 15), (250, 235, 200)), True
    if wants("invert", "negative"):
        img, applied = ImageOps.invert(img), True
    if wants("mirror", "flip horizontally", "flip it", "flip the"):
        img, applied = ImageOps.mirror(img), True
    if wants("upside down", "flip vertically"):
        img, applied = ImageOps.flip(img), True
    if wants("blur", "soften", "dreamy"):
        img, applied = img.filter(ImageFilter.GaussianBlur(max(2, min(img.size) // 150))), True
    if wants("sharpen", "crisp"):
        img, applied = img.filter(ImageFilter.SHARPEN), True
    if wants("cartoon", "comic", "posterize", "pop art"):
        img, applied = ImageOps.posterize(img, 3), True
    if wants("brighter", "brighten", "lighter"):
        img, applied = ImageEnhance.Brightness(img).enhance(1.35), True
    if wants("darker", "darken", "night"):
        img, applied = ImageEnhance.Brightness(img).enhance(0.6), True
    colours = [rgb for name, rgb in _COLOURS.items() if re.search(rf"\b{name}\b", low)]
    if colours or not applied:
        tint = colours[0] if colours else tuple(rng.randrange(256) for _ in range(3))
        img = Image.blend(img, Image.new("RGB", img.size, tint), 0.25)
    return img


# ----------------------------------------------------------------------------- label
def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float, max_lines: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
        if len(lines) == max_lines:
            break
    if line and len(lines) < max_lines:
        lines.append(line)
    if lines and (len(" ".join(lines)) < len(" ".join(words))):
        last = lines[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


def _stamp(img: Image.Image, label: str, prompt: str) -> None:
    """Draw the offline label and the prompt in a dark band along the bottom edge."""
    W, H = img.size
    size = max(9, round(min(W * 0.03, H * 0.06)))
    font = ImageFont.load_default(size=size)  # Pillow's bundled font: same pixels on every machine
    small = ImageFont.load_default(size=max(8, round(size * 0.8)))
    pad = max(2, size // 3)
    lines = _wrap(prompt, small, W - 2 * pad, 2 if H >= 12 * size else 1) if prompt else []
    band = pad * 2 + size + len(lines) * (small.size + pad // 2)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, H - band, W, H), fill=(15, 15, 20))
    draw.text((pad, H - band + pad), label, font=font, fill=(255, 200, 60))
    y = H - band + pad + size + pad // 2
    for line in lines:
        draw.text((pad, y), line, font=small, fill=(235, 235, 235))
        y += small.size + pad // 2
