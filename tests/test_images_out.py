"""Images coming back: decode, display (and survive in the saved notebook), save, image config.

Image outputs come from the local server (its image models answer with `render_image`), through
the real SDK over a real socket.
"""
from __future__ import annotations

import base64
import io
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT
from kernel_fixtures import run_notebook
from magics_fixtures import shell  # noqa: F401
from PIL import Image

from gemini_magics.images import (ImageError, decode_image, image_config, image_mimebundle,
                                  image_response_format, save_images)
from gemini_magics.server.draw import render_image

SKYLINE = "Generate an image of a futuristic city skyline at sunset"


# ----------------------------------------------------------------------------- the local server
@pytest.fixture(scope="module")
def image_url(base_url):
    """The local server (echo engine): image models there answer with render_image()."""
    return base_url


@pytest.fixture(scope="module")
def image_client(client):
    return client


def png_part(prompt="a blue square", aspect="1:1", size="512", mime="image/png") -> dict:
    data, mime = render_image(prompt, aspect_ratio=aspect, image_size=size, mime_type=mime)
    return {"type": "image", "data": base64.b64encode(data).decode(), "mime_type": mime}


def one_sentence(message: str) -> str:
    assert "\n" not in message and message.endswith("."), message
    return message


# ----------------------------------------------------------------------------- decode
def test_output_image_from_the_sdk_decodes_to_pil(image_client):
    interaction = image_client.interactions.create(
        model="gemini-3.1-flash-image", input=SKYLINE,
        generation_config={"image_config": image_config("16:9", "1K")})
    img = decode_image(interaction.output_image)
    assert isinstance(img, Image.Image) and img.size == (1024, 576) and img.format == "PNG"
    echoed = interaction.generation_config.image_config
    assert (echoed.aspect_ratio, echoed.image_size) == ("16:9", "1K")
    assert img.tobytes() == Image.open(io.BytesIO(render_image(
        SKYLINE, aspect_ratio="16:9", image_size="1K")[0])).tobytes()


def test_streamed_image_delta_decodes_the_same(image_client):
    stream = image_client.interactions.create(model="gemini-3.1-flash-image", input=SKYLINE, stream=True)
    deltas = [e.delta for e in stream if e.event_type == "step.delta" and e.delta.type == "image"]
    assert len(deltas) == 1
    img = decode_image(deltas[0])
    assert img.size == (1024, 1024)
    assert image_mimebundle(deltas[0])["image/png"] == deltas[0].data


def test_decode_dict_part_and_the_pixels_stay_usable():
    img = decode_image(png_part(size="512"))
    assert img.size == (512, 512)
    assert img.copy().getpixel((0, 0))  # loaded: no file handle needed any more


@pytest.mark.parametrize("width", [31, 32, 33])  # encoded sizes with 0, 1 and 2 '=' of padding
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_decoded_pixels_match_pillow_for_any_padding_and_line_wrapping(width, fmt):
    original = Image.effect_noise((width, 17), 60).convert("RGB")
    buf = io.BytesIO()
    original.save(buf, format=fmt)
    reference = Image.open(io.BytesIO(buf.getvalue()))
    reference.load()
    text = base64.b64encode(buf.getvalue()).decode()
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))  # MIME-style base64
    for data in (text, text.encode(), wrapped):
        img = decode_image({"type": "image", "data": data, "mime_type": f"image/{fmt.lower()}"})
        assert img.size == (width, 17) and img.tobytes() == reference.tobytes()


@pytest.mark.parametrize("part, words", [
    ({"type": "image", "uri": "https://x.com/a.png"}, "returned as a link"),
    ({"type": "image", "mime_type": "image/png"}, "no image data"),
    ({"type": "image", "data": base64.b64encode(b"not an image").decode(), "mime_type": "image/png"},
     "could not be decoded"),
    ({"type": "image", "data": "abc", "mime_type": "image/png"}, "not valid base64"),
])
def test_decode_errors_are_one_sentence(part, words):
    with pytest.raises(ImageError) as err:
        decode_image(part)
    assert isinstance(err.value, ValueError)
    assert words in one_sentence(str(err.value))


# ----------------------------------------------------------------------------- display
def test_bundle_of_a_part_passes_the_original_data_through():
    part = png_part(aspect="16:9")
    bundle = image_mimebundle(part)
    assert bundle["image/png"] is part["data"]  # no decode, no re-encode
    assert bundle["text/plain"] == "<PNG image 512x288>"
    jpeg = png_part(mime="image/jpeg")
    assert set(image_mimebundle(jpeg)) == {"image/jpeg", "text/plain"}


def test_bundle_of_a_pil_image_round_trips():
    img = Image.new("RGBA", (30, 20), (200, 10, 10, 255))
    bundle = image_mimebundle(img)
    back = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert back.size == (30, 20) and back.getpixel((3, 3)) == (200, 10, 10, 255)
    assert bundle["text/plain"] == "<PNG image 30x20>"


def test_bundle_keeps_jpeg_photos_jpeg_and_converts_odd_modes():
    photo = Image.open(Path(__file__).parent / "data" / "photo.jpg")
    assert "image/jpeg" in image_mimebundle(photo)
    for mode in ("CMYK", "F", "I;16", "LAB"):
        bundle = image_mimebundle(Image.new(mode, (4, 4)))
        assert Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).size == (4, 4)


def test_bundle_of_other_formats_is_png():
    buf = io.BytesIO()
    Image.new("RGB", (6, 6), "green").save(buf, format="WEBP")
    bundle = image_mimebundle({"type": "image", "mime_type": "image/webp",
                               "data": base64.b64encode(buf.getvalue()).decode()})
    assert "image/png" in bundle


def test_bundle_reads_dimensions_after_a_long_exif_block():
    buf = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buf, format="JPEG", exif=b"Exif\x00\x00" + b"\x00" * 60000)
    part = {"type": "image", "mime_type": "image/jpeg", "data": base64.b64encode(buf.getvalue()).decode()}
    assert image_mimebundle(part)["text/plain"] == "<JPEG image 300x200>"


def test_bundle_of_something_else_is_a_clear_error():
    with pytest.raises(ImageError, match="Cannot display a str"):
        image_mimebundle("picture.png")
    garbage = {"type": "image", "mime_type": "image/png", "data": base64.b64encode(b"junk" * 50).decode()}
    with pytest.raises(ImageError) as err:
        image_mimebundle(garbage)
    assert "could not be read" in one_sentence(str(err.value))


# ----------------------------------------------------------------------------- save
def test_save_to_a_directory_numbers_files_and_never_overwrites(tmp_path):
    parts = [png_part("one"), png_part("two")]
    first = save_images(parts, tmp_path / "out")
    assert [p.name for p in first] == ["gemini_1.png", "gemini_2.png"]
    assert first[0].read_bytes() == base64.b64decode(parts[0]["data"])  # byte for byte
    again = save_images([decode_image(parts[0])], tmp_path / "out")
    assert [p.name for p in again] == ["gemini_3.png"]
    named = save_images(parts, str(tmp_path / "out") + "/", stem="city")
    assert [p.name for p in named] == ["city_1.png", "city_2.png"]


def test_save_to_a_file_and_numbered_siblings(tmp_path):
    single = save_images([png_part()], tmp_path / "city.png")
    assert single == [tmp_path / "city.png"] and Image.open(single[0]).size == (512, 512)
    several = save_images([png_part("a"), png_part("b")], tmp_path / "sub" / "city.png")
    assert [p.name for p in several] == ["city_1.png", "city_2.png"]


def test_save_converts_to_the_suffix_format(tmp_path):
    [jpg] = save_images([png_part()], tmp_path / "city.jpg")
    assert Image.open(jpg).format == "JPEG"
    [flat] = save_images([Image.new("RGBA", (8, 8), (0, 0, 0, 0))], tmp_path / "clear.jpeg")
    assert Image.open(flat).getpixel((1, 1)) == (255, 255, 255)  # transparency over white
    [webp] = save_images([png_part()], tmp_path / "city.webp")
    assert Image.open(webp).format == "WEBP"
    [auto] = save_images([png_part(mime="image/jpeg")], tmp_path / "dir")
    assert auto.suffix == ".jpg"


def test_save_errors(tmp_path):
    with pytest.raises(ImageError) as err:
        save_images([png_part()], tmp_path / "city.xyz")
    assert ".xyz" in one_sentence(str(err.value))
    (tmp_path / "plain_file").write_text("x")
    with pytest.raises(ImageError) as err:
        save_images([png_part()], tmp_path / "plain_file" / "city.png")
    assert "Cannot write images" in one_sentence(str(err.value))
    assert save_images([], tmp_path / "nothing") == []


# ----------------------------------------------------------------------------- image config
def test_image_config_values():
    assert image_config() == {}
    assert image_config("16:9") == {"aspect_ratio": "16:9"}
    assert image_config(size="4k") == {"image_size": "4K"}
    assert image_config(" 21:9 ", 512) == {"aspect_ratio": "21:9", "image_size": "512"}


def test_image_response_format_is_accepted_by_the_sdk(image_client):
    fmt = image_response_format("9:16", "2K", "image/jpeg")
    assert fmt == {"type": "image", "aspect_ratio": "9:16", "image_size": "2K", "mime_type": "image/jpeg"}
    interaction = image_client.interactions.create(model="gemini-3.1-flash-image", input="x",
                                                   response_format=fmt)
    assert interaction.output_image.mime_type == "image/jpeg"
    assert decode_image(interaction.output_image).size == (1152, 2048)
    with pytest.raises(ImageError, match="image/gif"):
        image_response_format(mime_type="image/gif")


@pytest.mark.parametrize("aspect, size, words", [
    ("16x9", None, ["'16x9'", "16:9"]), ("2:1", None, ["'2:1'"]), (None, "8K", ["'8K'", "1K, 2K, 4K"]),
    (None, "big", ["'big'"]),
])
def test_image_config_errors(aspect, size, words):
    with pytest.raises(ImageError) as err:
        image_config(aspect, size)
    message = one_sentence(str(err.value))
    assert all(w in message for w in words)


# ----------------------------------------------------------------------------- notebook
# (the quickstart's image example runs in tests/server/test_image_model.py)
def test_displayed_images_are_kept_in_the_saved_notebook(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    cells = [
        f"import sys; sys.path.insert(0, {str(ROOT)!r})",
        textwrap.dedent("""\
            import base64
            from IPython.display import display
            from gemini_magics.images import decode_image, image_mimebundle
            from gemini_magics.server.draw import render_image
            data, mime = render_image("a lighthouse by the sea", aspect_ratio="4:3", image_size="512")
            part = {"type": "image", "data": base64.b64encode(data).decode(), "mime_type": mime}
            display(image_mimebundle(part), raw=True)
            img = decode_image(part)
            display(image_mimebundle(img.convert("RGBA")), raw=True)
        """),
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    saved = run_notebook(nb, tmp_path / "images.ipynb",
                         resources={"metadata": {"path": str(tmp_path)}})
    outputs = [o for o in saved.cells[1].outputs if o.output_type == "display_data"]
    assert len(outputs) == 2
    for out in outputs:
        img = Image.open(io.BytesIO(base64.b64decode(out.data["image/png"])))
        assert img.size == (512, 384)
        assert out.data["text/plain"] == "<PNG image 512x384>"


# ----------------------------------------------------------------------------- shown at a readable width
@pytest.mark.parametrize("size, width", [("1K", 512), ("512", None)])
def test_a_generated_image_is_shown_at_most_512_px_wide_and_kept_whole(shell, monkeypatch, size, width):
    from magics_fixtures import record_publishes, run_cell

    published = record_publishes(monkeypatch)
    cap = run_cell(shell, f"%%gemini -m gemini-3.1-flash-image --size {size} --aspect 16:9 -o r\n"
                          f"{SKYLINE}")
    assert cap.error is None, cap.stdout
    (shown,) = [p for p in published if "image/png" in p["data"]]
    assert shown["metadata"] == ({"image/png": {"width": width}} if width else {})
    full = Image.open(io.BytesIO(base64.b64decode(shown["data"]["image/png"])))
    assert full.size == shell.user_ns["r"].image.size  # the output keeps every pixel
    assert full.width == (1024 if size == "1K" else 512)
