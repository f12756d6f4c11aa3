"""The offline image renderer: real, deterministic, labelled pictures that honour the image config."""
from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from gemini_magics.catalog import ASPECT_RATIOS
from gemini_magics.server.draw import image_dimensions, render_image

SKYLINE = "Generate an image of a futuristic city skyline at sunset"  # the quickstart's prompt
LABEL_YELLOW = (255, 200, 60)


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_quickstart_prompt_gives_a_labelled_1k_png():
    data, mime = render_image(SKYLINE, aspect_ratio=None, image_size=None)
    assert mime == "image/png" and data.startswith(b"\x89PNG\r\n\x1a\n")
    img = _open(data)
    assert img.size == (1024, 1024) and img.mode == "RGB"
    assert "offline" in img.info["Software"].lower()
    assert img.info["Description"] == SKYLINE
    # The label band along the bottom holds the yellow "OFFLINE RENDERING" text.
    band = img.crop((0, int(img.height * 0.9), img.width, img.height))
    assert LABEL_YELLOW in {rgb for _, rgb in band.getcolors(maxcolors=1 << 16)}


def test_same_prompt_same_bytes_and_different_prompts_differ():
    a, _ = render_image(SKYLINE, aspect_ratio="16:9", image_size="512")
    b, _ = render_image(SKYLINE, aspect_ratio="16:9", image_size="512")
    c, _ = render_image("a quiet forest by a lake", aspect_ratio="16:9", image_size="512")
    assert a == b
    assert a != c


def test_picture_depends_on_the_prompt_not_only_the_label():
    a = _open(render_image("mountains at night", aspect_ratio="1:1", image_size="512")[0])
    b = _open(render_image("sunny beach by the sea", aspect_ratio="1:1", image_size="512")[0])
    top = (0, 0, 512, 300)  # above the label band
    assert ImageChops.difference(a.crop(top), b.crop(top)).getbbox() is not None
    # A night scene is darker than a sunny one.
    brightness = [ImageStat.Stat(img.crop(top).convert("L")).mean[0] for img in (a, b)]
    assert brightness[0] < brightness[1]


@pytest.mark.parametrize("aspect", ASPECT_RATIOS)
def test_every_protocol_aspect_ratio(aspect):
    width, height = image_dimensions(aspect, "512")
    img = _open(render_image("shapes", aspect_ratio=aspect, image_size="512")[0])
    assert img.size == (width, height)
    a, b = (int(x) for x in aspect.split(":"))
    assert max(img.size) == 512
    assert abs(img.width / img.height - a / b) < 0.1 * (a / b)


@pytest.mark.parametrize("size, long_side", [("512", 512), ("1K", 1024), ("2K", 2048), ("1k", 1024)])
def test_image_sizes(size, long_side):
    img = _open(render_image("a red circle", aspect_ratio="16:9", image_size=size)[0])
    assert img.size == (long_side, long_side * 9 // 16)


def test_4k_render():
    img = _open(render_image(SKYLINE, aspect_ratio="16:9", image_size="4K")[0])
    assert img.size == (4096, 2304)


def test_jpeg_output():
    data, mime = render_image(SKYLINE, aspect_ratio="4:3", image_size="512", mime_type="image/jpeg")
    assert mime == "image/jpeg" and data[:3] == b"\xff\xd8\xff"
    assert _open(data).size == (512, 384)


@pytest.mark.parametrize("kwargs, words", [
    ({"aspect_ratio": "7:3"}, ["'7:3'", "16:9"]),
    ({"aspect_ratio": "16x9"}, ["'16x9'", "21:9"]),
    ({"image_size": "8K"}, ["'8K'", "4K"]),
    ({"image_size": "1024"}, ["'1024'", "1K"]),
    ({"mime_type": "image/gif"}, ["image/gif", "image/png"]),
])
def test_invalid_config_is_one_clear_sentence(kwargs, words):
    with pytest.raises(ValueError) as err:
        render_image("x", **{"aspect_ratio": None, "image_size": None, **kwargs})
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0


# ----------------------------------------------------------------------------- editing
@pytest.fixture(scope="module")
def photo() -> bytes:
    img = Image.new("RGB", (300, 200), (30, 120, 220))
    img.paste((240, 60, 40), (0, 0, 100, 200))  # red on the left
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_edit_keeps_the_source_proportions_and_is_deterministic(photo):
    a, mime = render_image("add a hat", aspect_ratio=None, image_size="512", source=photo)
    b, _ = render_image("add a hat", aspect_ratio=None, image_size="512", source=photo)
    c, _ = render_image("add a scarf", aspect_ratio=None, image_size="512", source=photo)
    assert mime == "image/png" and a == b and a != c
    img = _open(a)
    assert img.size == (512, 344)  # 3:2 source, long side 512, short side a multiple of 8


def test_edit_with_an_aspect_ratio_crops_to_it(photo):
    img = _open(render_image("make it square", aspect_ratio="1:1", image_size="512", source=photo)[0])
    assert img.size == (512, 512)


def test_edit_instructions_change_the_picture(photo):
    gray = _open(render_image("make it black and white", aspect_ratio=None, image_size="512",
                              source=photo)[0])
    r, g, b = gray.getpixel((50, 50))
    assert r == g == b
    mirrored = _open(render_image("mirror it", aspect_ratio=None, image_size="512", source=photo)[0])
    left, right = mirrored.getpixel((20, 50)), mirrored.getpixel((490, 50))
    assert left[2] > left[0] and right[0] > right[2]  # the red band moved to the right
    label = mirrored.crop((0, 300, 512, 344))
    assert LABEL_YELLOW in {rgb for _, rgb in label.getcolors(maxcolors=1 << 16)}


def test_edit_of_a_corrupt_source_is_a_clear_error():
    with pytest.raises(ValueError, match="could not be decoded"):
        render_image("fix it", aspect_ratio=None, image_size=None, source=b"not an image at all")
