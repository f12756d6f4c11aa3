"""Media parts described in words for the local text model; bad data never raises; URLs never fetched."""
from __future__ import annotations

import base64
import io
import socket
from pathlib import Path

import pytest
from PIL import Image

from gemini_magics.server.describe import describe_part, part_bytes
from gemini_magics.server.draw import render_image

DATA = Path(__file__).resolve().parents[1] / "data"


def inline(kind: str, mime: str, raw: bytes) -> dict:
    return {"type": kind, "mime_type": mime, "data": base64.b64encode(raw).decode()}


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_png_is_described_with_format_size_mode_and_colour():
    text = describe_part(inline("image", "image/png", fixture("tiny.png")))
    assert text == "[Attached image: PNG, 16x12 pixels, RGB, mostly blue, 99 bytes]"


def test_label_for_the_models_own_images():
    part = inline("image", "image/png", fixture("tiny.png"))
    assert describe_part(part, label="Generated image").startswith("[Generated image: PNG, 16x12")
    assert describe_part(part).startswith("[Attached image: PNG")  # cached per label


def test_jpeg_and_a_generated_4k_png():
    assert "JPEG, 32x24 pixels" in describe_part(inline("image", "image/jpeg", fixture("photo.jpg")))
    data, mime = render_image("city at night", aspect_ratio="16:9", image_size="4K")
    text = describe_part(inline("image", mime, data))
    # 9.4 megapixels in ~100 KB: described from its header, its pixels are never decoded
    assert "PNG, 4096x2304 pixels, RGB," in text and "mostly" not in text


def test_declared_type_is_checked_against_the_bytes():
    # Says PNG, is JPEG: the description reports what the bytes really are.
    assert "JPEG, 32x24" in describe_part(inline("image", "image/png", fixture("photo.jpg")))


def test_wav_duration_channels_and_rate():
    text = describe_part(inline("audio", "audio/wav", fixture("tone.wav")))
    assert text == "[Attached audio: WAV, 0.5 seconds, mono, 8000 Hz, 16-bit, 8.0 KB]"


def test_other_audio_and_video_give_type_and_size():
    assert describe_part(inline("audio", "audio/mp3", b"ID3" + b"\0" * 2000)) == \
        "[Attached audio: audio/mp3, 2.0 KB]"
    assert describe_part(inline("video", "video/mp4", b"\0" * 1_500_000)) == \
        "[Attached video: video/mp4, 1.5 MB]"


def test_pdf_page_count():
    assert describe_part(inline("document", "application/pdf", fixture("two_pages.pdf"))).startswith(
        "[Attached document: PDF, 2 pages,")


def test_csv_rows_columns_and_header():
    text = describe_part(inline("document", "text/csv", fixture("table.csv")))
    assert text == ("[Attached document: CSV table, 3 rows x 3 columns, header: city, country, "
                    "population, 87 bytes]")


def test_plain_text_gives_an_excerpt():
    text = describe_part(inline("document", "text/plain", fixture("notes.txt")))
    assert "3 lines" in text and "Shopping list milk eggs" in text


def test_office_document_gives_its_kind():
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert describe_part(inline("document", mime, b"PK\x03\x04" + b"\0" * 100)) == \
        "[Attached document: Word document, 104 bytes]"


@pytest.mark.parametrize("part, expected", [
    (inline("image", "image/png", fixture("corrupt.png")), "could not be decoded"),
    (inline("image", "image/jpeg", fixture("truncated.jpg")), "could not be decoded"),
    (inline("image", "image/png", b"hello"), "could not be decoded"),
    (inline("audio", "audio/wav", b"RIFF\0\0\0\0WAVEjunk"), "could not be decoded"),
    (inline("audio", "audio/wav", b"not a wav"), "not a WAV file"),
    (inline("document", "application/pdf", b"hello"), "not a PDF file"),
    (inline("document", "text/csv", b"a,b\x00\x01"), "could not be decoded"),
    ({"type": "image", "mime_type": "image/png", "data": "!!!!"}, "not valid base64"),
    ({"type": "image"}, "empty"),
])
def test_bad_data_is_described_not_raised(part, expected):
    text = describe_part(part)
    assert text.startswith("[Attached ") and expected in text


def test_uri_part_is_named_and_never_fetched():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/sample.mp3"
    try:
        text = describe_part({"type": "audio", "uri": url, "mime_type": "audio/mp3"})
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody connected
    finally:
        listener.close()
    assert url in text and "not fetched" in text and "audio/mp3" in text


def test_quickstart_remote_audio():
    text = describe_part({"type": "audio", "mime_type": "audio/mp3",
                          "uri": "https://storage.googleapis.com/generativeai-downloads/data/sample.mp3"})
    assert text.startswith("[Attached audio: remote file https://storage.googleapis.com/")


def test_text_parts_and_odd_values():
    assert describe_part({"type": "text", "text": "hello"}) == "hello"
    assert describe_part("not a dict").startswith("[Attached content of an unknown kind")


def test_part_bytes_round_trip_for_image_editing():
    raw = fixture("tiny.png")
    assert part_bytes(inline("image", "image/png", raw)) == raw
    assert part_bytes({"type": "image", "uri": "https://x/y.png"}) is None
    assert part_bytes({"type": "image", "data": "@@@@"}) is None
    # What the server will feed render_image(source=...) must open with Pillow.
    assert Image.open(io.BytesIO(part_bytes(inline("image", "image/png", raw)))).size == (16, 12)
