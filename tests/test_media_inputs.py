"""User inputs to content parts: every input kind, every refusal, and the wire round trip."""
from __future__ import annotations

import base64
import io
import os
import zipfile
from pathlib import Path

import re

import pytest
from conftest import run_seed
from magics_fixtures import shell  # noqa: F401
from PIL import Image

from gemini_magics.media import (INLINE_LIMIT, MediaError, check_inline_size, is_media_value,
                                 media_part, media_parts, sniff_mime)

DATA = Path(__file__).resolve().parent / "data"
SAMPLE_MP3 = "https://storage.googleapis.com/generativeai-downloads/data/sample.mp3"


def raw_of(part: dict) -> bytes:
    return base64.b64decode(part["data"])


def one_sentence(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    assert message.endswith("."), message
    return message


def refused(value, **kwargs) -> str:
    with pytest.raises(MediaError) as err:
        media_part(value, **kwargs)
    assert isinstance(err.value, ValueError)
    return one_sentence(str(err.value))


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("name, ctype, mime", [
    ("tiny.png", "image", "image/png"),
    ("photo.jpg", "image", "image/jpeg"),
    ("tone.wav", "audio", "audio/wav"),
    ("two_pages.pdf", "document", "application/pdf"),
    ("table.csv", "document", "text/csv"),
    ("notes.txt", "document", "text/plain"),
])
def test_local_files_go_inline_with_their_type(name, ctype, mime):
    part = media_part(str(DATA / name))
    assert part == {"type": ctype, "mime_type": mime, "data": part["data"]}
    assert raw_of(part) == (DATA / name).read_bytes()


def test_path_objects_and_home_expansion(monkeypatch, tmp_path):
    (tmp_path / "pic.png").write_bytes((DATA / "tiny.png").read_bytes())
    monkeypatch.setenv("HOME", str(tmp_path))
    assert media_part("~/pic.png", kind="image")["mime_type"] == "image/png"
    assert media_part(tmp_path / "pic.png")["type"] == "image"


def test_type_comes_from_the_bytes_not_the_name(tmp_path):
    wrong = tmp_path / "really_a_jpeg.png"
    wrong.write_bytes((DATA / "photo.jpg").read_bytes())
    assert media_part(str(wrong))["mime_type"] == "image/jpeg"
    song = tmp_path / "song"  # no extension at all
    song.write_bytes(b"ID3\x04\x00" + b"\x00" * 200)
    assert media_part(str(song)) == {"type": "audio", "mime_type": "audio/mp3", "data": media_part(str(song))["data"]}


def test_other_media_types_by_magic_bytes(tmp_path):
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64
    cases = {"a.heic": (heic, "image", "image/heic"), "v.mp4": (mp4, "video", "video/mp4"),
             "s.flac": (b"fLaC" + b"\0" * 40, "audio", "audio/flac"),
             "m.webm": (b"\x1a\x45\xdf\xa3" + b"\0" * 40, "video", "video/webm")}
    for name, (raw, ctype, mime) in cases.items():
        (tmp_path / name).write_bytes(raw)
        part = media_part(str(tmp_path / name))
        assert (part["type"], part["mime_type"]) == (ctype, mime), name


def test_office_documents_by_extension_and_by_content(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    (tmp_path / "report.docx").write_bytes(buf.getvalue())
    assert media_part(str(tmp_path / "report.docx"))["mime_type"] == docx
    assert media_part(buf.getvalue()) == {"type": "document", "mime_type": docx,
                                          "data": base64.b64encode(buf.getvalue()).decode()}


def test_image_formats_gemini_does_not_read_are_sent_as_png(tmp_path):
    Image.new("RGB", (5, 4), (1, 2, 3)).save(tmp_path / "old.ppm")
    part = media_part(str(tmp_path / "old.ppm"), kind="image")
    assert part["mime_type"] == "image/png"
    img = Image.open(io.BytesIO(raw_of(part)))
    assert img.format == "PNG" and img.size == (5, 4) and img.getpixel((0, 0)) == (1, 2, 3)


# ----------------------------------------------------------------------------- PIL, bytes, files
def test_pil_image_becomes_png():
    img = Image.new("RGBA", (7, 3), (10, 20, 30, 128))
    part = media_part(img, kind="image")
    assert part["type"] == "image" and part["mime_type"] == "image/png"
    back = Image.open(io.BytesIO(raw_of(part)))
    assert back.size == (7, 3) and back.getpixel((0, 0)) == (10, 20, 30, 128)


def test_pil_image_read_from_a_jpeg_stays_jpeg_and_cmyk_is_converted():
    photo = Image.open(DATA / "photo.jpg")
    assert media_part(photo)["mime_type"] == "image/jpeg"
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    back = Image.open(io.BytesIO(raw_of(media_part(cmyk))))
    assert back.mode == "RGB" and back.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("name, ctype, mime", [
    ("tiny.png", "image", "image/png"), ("photo.jpg", "image", "image/jpeg"),
    ("tone.wav", "audio", "audio/wav"), ("two_pages.pdf", "document", "application/pdf"),
])
def test_bytes_are_sniffed(name, ctype, mime):
    raw = (DATA / name).read_bytes()
    for value in (raw, bytearray(raw), memoryview(raw), io.BytesIO(raw)):
        part = media_part(value)
        assert (part["type"], part["mime_type"]) == (ctype, mime)
        assert raw_of(part) == raw


def test_open_binary_file(tmp_path):
    with open(DATA / "tone.wav", "rb") as f:
        assert media_part(f)["mime_type"] == "audio/wav"
    with open(DATA / "notes.txt") as f:
        assert "text mode" in refused(f)


def test_text_bytes_become_a_plain_text_document():
    assert media_part(b"just some notes\n")["mime_type"] == "text/plain"


def test_content_parts_pass_through():
    part = {"type": "image", "data": base64.b64encode((DATA / "tiny.png").read_bytes()).decode(),
            "mime_type": "image/png"}
    assert media_part(part) == part and media_part(part) is not part
    remote = {"type": "audio", "uri": SAMPLE_MP3, "mime_type": "audio/mp3"}
    assert media_part(remote) == remote


# ----------------------------------------------------------------------------- URLs
def test_quickstart_remote_audio_url():
    assert media_part(SAMPLE_MP3) == {"type": "audio", "uri": SAMPLE_MP3, "mime_type": "audio/mp3"}


@pytest.mark.parametrize("url, expected", [
    ("https://example.com/cat.PNG", {"type": "image", "mime_type": "image/png"}),
    ("http://example.com/a/clip.mp4?sig=1", {"type": "video", "mime_type": "video/mp4"}),
    ("https://example.com/paper.pdf#page=2", {"type": "document", "mime_type": "application/pdf"}),
    ("gs://bucket/data/table.csv", {"type": "document", "mime_type": "text/csv"}),
    ("http://localhost:8000/x.jpg", {"type": "image", "mime_type": "image/jpeg"}),
])
def test_urls_are_sent_as_uri(url, expected):
    assert media_part(url) == {**expected, "uri": url}


def test_url_without_extension_is_fine_as_an_image():
    assert media_part("https://picsum.photos/200", kind="image") == {"type": "image",
                                                                     "uri": "https://picsum.photos/200"}
    assert "from its name" in refused("https://picsum.photos/200", kind="file")


@pytest.mark.parametrize("url, words", [
    ("https//example.com/a.png", "not a valid URL"),
    ("http:/example.com/a.png", "not a valid URL"),
    ("https://exa mple.com/a.png", "not a valid URL"),
    ("https://", "not a valid URL"),
    ("https://nohost/a.png", "not a valid URL"),
    ("http://[::1/a.png", "not a valid URL"),
    ("ftp://example.com/a.png", "only http://, https:// and gs://"),
    ("file:///etc/passwd", "only http://, https:// and gs://"),
    ("www.example.com/a.png", "add https://"),
    ("https://example.com/archive.zip", "cannot read"),
])
def test_bad_urls(url, words):
    assert words in refused(url)


def test_url_of_the_wrong_kind():
    assert "not an image" in refused(SAMPLE_MP3, kind="image")


# ----------------------------------------------------------------------------- variables
@pytest.fixture()
def ns():
    class Result:
        image = Image.new("RGB", (3, 3), "red")

    return {"img": Image.new("RGB", (4, 4), "blue"), "raw": (DATA / "photo.jpg").read_bytes(),
            "path": str(DATA / "tone.wav"), "p": DATA / "tiny.png", "url": SAMPLE_MP3,
            "result": Result(), "n": 42, "items": [1, 2], "missing": "/nowhere/x.png"}


def test_variables_of_every_kind(ns):
    assert media_part("img", user_ns=ns, kind="image")["mime_type"] == "image/png"
    assert media_part("raw", user_ns=ns, kind="image")["mime_type"] == "image/jpeg"
    assert media_part("path", user_ns=ns)["mime_type"] == "audio/wav"
    assert media_part("p", user_ns=ns, kind="image")["mime_type"] == "image/png"
    assert media_part("url", user_ns=ns)["uri"] == SAMPLE_MP3
    assert Image.open(io.BytesIO(raw_of(media_part("result.image", user_ns=ns)))).size == (3, 3)


def test_a_variable_wins_over_a_file_of_the_same_name(ns, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img").write_bytes((DATA / "photo.jpg").read_bytes())
    assert media_part("img", user_ns=ns)["mime_type"] == "image/png"  # the PIL variable
    assert media_part("img", user_ns={})["mime_type"] == "image/jpeg"  # the file


@pytest.mark.parametrize("name, words", [
    ("n", ["'n'", "an int", "not an image"]),
    ("items", ["'items'", "a list"]),
    ("missing", ["'missing'", "no such file"]),
    ("nothing_here", ["No file or variable named 'nothing_here'"]),
    ("result.colour", ["File not found: 'result.colour'"]),
])
def test_bad_variables(ns, name, words):
    message = refused(name, user_ns=ns, kind="image")
    assert all(w in message for w in words), message


# ----------------------------------------------------------------------------- refusals
def test_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = refused("holiday.jpg")
    assert "File not found: 'holiday.jpg'" in message and str(tmp_path) in message


@pytest.mark.parametrize("name", ["corrupt.png", "truncated.jpg"])
def test_corrupt_images(name):
    assert "not a readable image" in refused(str(DATA / name))


def test_corrupt_image_bytes_and_image_named_text(tmp_path):
    assert "not a readable image" in refused((DATA / "corrupt.png").read_bytes())
    (tmp_path / "fake.png").write_text("hello, I am text")
    assert "text/plain, not an image" in refused(str(tmp_path / "fake.png"), kind="image")


def test_unsupported_types(tmp_path):
    (tmp_path / "a.zip").write_bytes(_zip_bytes())
    assert "application/zip, which Gemini cannot read" in refused(str(tmp_path / "a.zip"))
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)
    assert "application/octet-stream, which Gemini cannot read" in refused(str(tmp_path / "blob.bin"))
    assert "type we could not recognise" in refused(bytes(range(256)) * 4)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.txt", "x")
    return buf.getvalue()


def test_audio_where_an_image_is_required():
    message = refused(str(DATA / "tone.wav"), kind="image")
    assert "audio/wav, not an image" in message and "--file" in message


def test_directory_and_empty_file(tmp_path):
    assert "is a directory" in refused(str(tmp_path))
    (tmp_path / "empty.png").write_bytes(b"")
    assert "is empty" in refused(str(tmp_path / "empty.png"))
    assert "No file given" in refused("  ")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    f = tmp_path / "secret.png"
    f.write_bytes((DATA / "tiny.png").read_bytes())
    f.chmod(0)
    assert "permission denied" in refused(str(f))


def test_huge_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "movie.mp4"
    with open(big, "wb") as f:
        f.truncate(16_000_000)  # sparse: 16 MB of bytes is 21.3 MB of base64
    message = refused(str(big))
    assert "16.0 MB" in message and "20.0 MB" in message and "URL" in message
    assert INLINE_LIMIT == 20_000_000


def test_size_limit_applies_to_every_input_kind():
    raw = (DATA / "tone.wav").read_bytes()
    for value in (raw, str(DATA / "tone.wav"), Image.new("RGB", (200, 200))):
        with pytest.raises(MediaError, match="too large to send inline"):
            media_part(value, limit=100)


def test_total_inline_size_of_a_request():
    wav = str(DATA / "tone.wav")
    parts = media_parts([wav, wav], limit=30_000)
    assert len(parts) == 2
    with pytest.raises(MediaError) as err:
        media_parts([wav, wav, wav, wav], limit=30_000)
    assert "add up to 42.9 KB" in one_sentence(str(err.value))
    check_inline_size([{"type": "audio", "uri": SAMPLE_MP3}] * 100, limit=10)  # URLs cost nothing


# ----------------------------------------------------------------------------- interpolation
def test_is_media_value():
    assert is_media_value(Image.new("RGB", (1, 1)))
    assert is_media_value((DATA / "tiny.png").read_bytes())
    assert is_media_value((DATA / "tone.wav").read_bytes())
    assert is_media_value({"type": "image", "uri": "https://x.com/a.png"})
    for value in ("tiny.png", DATA / "tiny.png", b"plain text", 3, None, {"type": "text", "text": "x"},
                  {"type": "image"}):
        assert not is_media_value(value), value


def test_sniff_mime_helper():
    assert sniff_mime((DATA / "tiny.png").read_bytes()) == "image/png"
    assert sniff_mime(b"a,b\n1,2\n", "t.csv") == "text/csv"
    assert sniff_mime(bytes(range(256))) is None


# ----------------------------------------------------------------------------- over the wire
def test_parts_cross_the_sdk_and_the_local_server_unchanged(client, ns):
    parts = [{"type": "text", "text": "Compare these."},
             media_part(str(DATA / "photo.jpg"), kind="image"),
             media_part("img", user_ns=ns, kind="image"),
             media_part(SAMPLE_MP3),
             media_part(str(DATA / "tone.wav")),
             media_part(str(DATA / "two_pages.pdf")),
             media_part(str(DATA / "table.csv"))]
    created = client.interactions.create(model="gemini-3.5-flash", input=parts)
    assert created.status == "completed"
    stored = client.interactions.get(created.id, include_input=True)
    sent_back = stored.input[0].content
    assert [c.type for c in sent_back] == [p["type"] for p in parts]
    for got, want in zip(sent_back[1:], parts[1:]):
        assert (got.mime_type, got.data, got.uri) == (want.get("mime_type"), want.get("data"), want.get("uri"))
    # SDK content objects (e.g. from a previous answer) are accepted as inputs too.
    assert media_part(sent_back[1]) == parts[1]
    assert is_media_value(sent_back[1])




def test_quickstart_multimodal_example_runs_unchanged(base_url, tmp_path):
    (tmp_path / "sample.jpg").write_bytes((DATA / "photo.jpg").read_bytes())
    out = run_seed("multimodal.py", base_url, tmp_path)
    assert "Compare this local image and this remote audio file." in out
    # The same request built with media_part is identical on the wire.
    built = [media_part(str(tmp_path / "sample.jpg")), media_part(SAMPLE_MP3)]
    assert built[0] == {"type": "image", "data": base64.b64encode((DATA / "photo.jpg").read_bytes()).decode(),
                        "mime_type": "image/jpeg"}
    assert built[1] == {"type": "audio", "uri": SAMPLE_MP3, "mime_type": "audio/mp3"}


# ----------------------------------------------------------------------------- what was sent, shown
def _sent_outputs(shell, monkeypatch, source: str) -> list:
    """The final outputs of a cell, in the order they were first published."""
    from magics_fixtures import final_outputs, record_publishes, run_cell

    published = record_publishes(monkeypatch)
    cap = run_cell(shell, source)
    assert cap.error is None, (cap.stdout, cap.stderr)
    return final_outputs([{"data": p["data"], "update": p["update"],
                           "transient": {"display_id": p["display_id"]}} for p in published])


def test_attachments_are_shown_above_the_answer_as_a_thumbnail_and_chips(shell, monkeypatch, tmp_path):
    big = tmp_path / "wide.png"
    Image.new("RGB", (1600, 400), (200, 30, 30)).save(big)
    outs = _sent_outputs(shell, monkeypatch,
                         f"%%gemini --image {big} --file {DATA / 'table.csv'} "
                         f"--file https://example.com/talk.mp3\nWhat is here?")
    sent, answer = outs[0], outs[1]
    assert "Echo:" in answer["text/markdown"]  # the answer comes after what was sent
    assert sent["text/plain"] == ("Sent: wide.png (PNG image, 1600×400, "
                                  f"{human(big.stat().st_size)}); table.csv (CSV, "
                                  f"{human((DATA / 'table.csv').stat().st_size)}); talk.mp3 "
                                  "(MP3 audio, by URL)")
    page = sent["text/html"]
    # the thumbnail: a small JPEG in the page, shown 96 px high, its name under it
    (src,) = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" height="96"', page)
    thumb = Image.open(io.BytesIO(base64.b64decode(src)))
    assert thumb.height == 192 and thumb.width == 768 and len(src) < 40_000
    assert "wide.png · " in page and ">table.csv · CSV · " in page and ">talk.mp3 · MP3 audio · link" in page


def test_a_pil_variable_and_a_prompt_image_are_named_and_text_cells_show_nothing(shell, monkeypatch):
    shell.user_ns["pic"] = Image.new("RGBA", (40, 30), (0, 0, 255, 128))
    outs = _sent_outputs(shell, monkeypatch, "%%gemini --image pic\nAnd {pic}?")
    assert outs[0]["text/plain"].startswith("Sent: pic (PNG image, 40×30, ")
    assert "; in the prompt (PNG image, 40×30, " in outs[0]["text/plain"]
    assert outs[0]["text/html"].count('height="30"') == 2  # a small image is not blown up
    outs = _sent_outputs(shell, monkeypatch, "%%gemini\nJust words")
    assert not any("Sent:" in o.get("text/plain", "") for o in outs)


def test_a_huge_or_undecodable_image_gets_a_chip_not_a_decode(shell, monkeypatch):
    from gemini_magics.media import sent_bundle
    from gemini_magics.request import Request

    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (20000).to_bytes(4, "big") * 2
    part = {"type": "image", "data": base64.b64encode(header + b"\x08\x02\x00\x00\x00").decode(),
            "mime_type": "image/png"}
    shown = sent_bundle(Request(text="x", parts=[part, "x"], images=["bomb.png"]))
    assert "<img" not in shown["text/html"] and ">bomb.png · PNG image · " in shown["text/html"]


def test_the_terminal_names_what_was_sent_first(shell):
    from magics_fixtures import magics_of, run_cell

    magics_of(shell).display = "terminal"
    cap = run_cell(shell, f"%%gemini --file {DATA / 'table.csv'}\nRows?")
    assert cap.error is None
    assert cap.stdout.startswith("Sent: table.csv (CSV, ") and "Echo:" in cap.stdout


def human(n: int) -> str:
    from gemini_magics.catalog import human_size
    return human_size(n)
