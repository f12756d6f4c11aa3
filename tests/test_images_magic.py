"""`%%gemini` with media in and images out, end to end: a real IPython shell, the real SDK, the
local server over a real socket (echo engine: its answers show what it received).

Bad inputs are tried against a scripted loopback server, which records every request, to show
that nothing at all was sent.
"""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from kernel_fixtures import kernel_env, run_notebook, setup_source  # noqa: F401
from magics_fixtures import magics_of, run_cell, scripted, shell  # noqa: F401

DATA = Path(__file__).resolve().parent / "data"
IMAGE = "-m gemini-3.1-flash-image"


def ok(cap):
    assert cap.error is None, (cap.stdout, cap.stderr)
    return cap


def images_in(cap) -> list[Image.Image]:
    out = []
    for data in cap.final:
        for mime in ("image/png", "image/jpeg"):
            if mime in data:
                out.append(Image.open(io.BytesIO(base64.b64decode(data[mime]))))
    return out


def kinds(cap) -> list[str]:
    """Final outputs in order: 'sent' (the media the cell sent), 'text', 'image' or 'footer'."""
    out = []
    for data in cap.final:
        if "image/png" in data or "image/jpeg" in data:
            out.append("image")
        elif data.get("text/plain", "").startswith("Sent: "):
            out.append("sent")
        elif data.get("text/markdown", "").startswith("<details>"):
            out.append("footer")
        else:
            out.append("text")
    return out


def said(shell) -> str:
    """What the echo engine says it received as the last user message."""
    text = shell.user_ns["_gemini"].text
    return text.split("You said: ", 1)[1]


# ----------------------------------------------------------------------------- images out
@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_generated_image_is_shown_inline_and_kept_in_the_result(shell, stream):
    cap = ok(run_cell(shell, f"%%gemini {IMAGE} --aspect 16:9 --size 512 -o r {stream}\n"
                             "A futuristic city skyline at sunset"))
    assert kinds(cap) == ["text", "image", "footer"]
    assert cap.final[0]["text/markdown"].startswith("Offline rendering")
    [shown] = images_in(cap)
    assert shown.format == "PNG" and shown.size == (512, 288)
    assert cap.final[1]["text/plain"] == "<PNG image 512x288>"
    r = shell.user_ns["r"]
    assert len(r.images) == 1 and r.image is r.images[-1]
    assert isinstance(r.image, Image.Image) and r.image.size == (512, 288)
    assert r.image.tobytes() == shown.convert(r.image.mode).tobytes()
    assert r.interaction.output_image.mime_type == "image/png"  # the SDK object agrees


def test_streamed_and_unstreamed_images_are_identical(shell):
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 -o a --new\nred circles"))
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 -o b --new --no-stream\nred circles"))
    a, b = shell.user_ns["a"], shell.user_ns["b"]
    assert a.image_parts[0]["data"] == b.image_parts[0]["data"]


def test_text_models_answer_without_images(shell):
    cap = ok(run_cell(shell, "%%gemini -o r\nHello"))
    assert "image" not in kinds(cap)
    assert shell.user_ns["r"].images == [] and shell.user_ns["r"].image is None


def test_save_to_a_directory_numbers_and_never_overwrites(shell, tmp_path):
    target = tmp_path / "pictures"
    cap = ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 --save {target}/\na lighthouse"))
    assert cap.stdout.strip() == f"Saved 1 image: {target / 'gemini_1.png'}"
    data = shell.user_ns["_gemini"].image_parts[0]["data"]
    assert (target / "gemini_1.png").read_bytes() == base64.b64decode(data)  # byte for byte
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 --save {target}\na lighthouse"))
    assert sorted(p.name for p in target.iterdir()) == ["gemini_1.png", "gemini_2.png"]


def test_save_to_a_jpeg_file_converts(shell, tmp_path):
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 --save {tmp_path / 'city.jpg'}\na city"))
    assert Image.open(tmp_path / "city.jpg").format == "JPEG"


def test_save_problems_are_one_sentence(shell, tmp_path):
    (tmp_path / "file").write_text("x")
    cap = run_cell(shell, f"%%gemini {IMAGE} --size 512 --save {tmp_path / 'file' / 'a.png'}\nx")
    assert cap.error is not None and "Cannot write images" in cap.stdout
    assert "Traceback" not in cap.stdout and "image" in kinds(cap)  # the image is still shown
    cap = ok(run_cell(shell, f"%%gemini --save {tmp_path}/out\nHello"))
    assert "Nothing saved: the answer has no images" in cap.stdout
    assert not (tmp_path / "out").exists()


def test_terminal_prints_a_placeholder_line(shell):
    magics_of(shell).display = "terminal"
    cap = ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 --aspect 4:3\na red square"))
    lines = cap.stdout.splitlines()
    assert lines[0].startswith("Offline rendering")
    assert lines[1] == "[PNG image 512x384: the result's .images[0]]"
    assert lines[-1].startswith("— gemini-3.1-flash-image")
    assert cap.outputs == []


# ----------------------------------------------------------------------------- media in
def test_image_and_file_options_attach_local_files(shell):
    ok(run_cell(shell, f"%%gemini --image {DATA / 'photo.jpg'} --file {DATA / 'table.csv'} "
                       f"--file {DATA / 'tone.wav'} --file {DATA / 'two_pages.pdf'}\nWhat is here?"))
    lines = said(shell).splitlines()
    assert lines[0].startswith("[Attached image: JPEG, 32x24 pixels")
    assert lines[1].startswith("[Attached document: CSV table")
    assert lines[2].startswith("[Attached audio: WAV")
    assert lines[3].startswith("[Attached document: PDF, 2 pages")
    assert lines[4] == "What is here?"


def test_urls_are_sent_as_uri_and_never_fetched(shell):
    ok(run_cell(shell, "%%gemini --image https://example.com/cat.png "
                       "--file https://storage.googleapis.com/generativeai-downloads/data/sample.mp3\n"
                       "Compare them"))
    lines = said(shell).splitlines()
    assert lines[0].startswith("[Attached image: remote file https://example.com/cat.png")
    assert "sample.mp3, audio/mp3; not fetched" in lines[1]


def test_variables_pil_images_bytes_and_paths(shell):
    shell.user_ns["pic"] = Image.new("RGB", (40, 30), "blue")
    shell.user_ns["raw"] = (DATA / "photo.jpg").read_bytes()
    shell.user_ns["where"] = str(DATA / "tiny.png")
    ok(run_cell(shell, "%%gemini --image pic --image raw --image where\nDescribe"))
    lines = said(shell).splitlines()
    assert lines[0].startswith("[Attached image: PNG, 40x30 pixels, RGB, mostly blue")
    assert lines[1].startswith("[Attached image: JPEG, 32x24 pixels")
    assert lines[2].startswith("[Attached image: PNG")


def test_braces_place_images_where_they_are_written(shell):
    shell.user_ns["a"] = Image.new("RGB", (10, 10), "red")
    shell.user_ns["b"] = Image.new("RGB", (20, 10), "green")
    shell.user_ns["n"] = 2
    ok(run_cell(shell, "%%gemini\nCompare {a} with {b}: which of the {n} is wider?"))
    lines = said(shell).splitlines()
    assert lines[0] == "Compare "
    assert lines[1].startswith("[Attached image: PNG, 10x10 pixels, RGB, mostly red")
    assert lines[2] == " with "
    assert lines[3].startswith("[Attached image: PNG, 20x10 pixels, RGB, mostly dark green")
    assert lines[4] == ": which of the 2 is wider?"


def test_editing_a_generated_image(shell):
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 --aspect 3:2 -o first\na sunny beach"))
    cap = ok(run_cell(shell, f"%%gemini {IMAGE} -o edit --new\nMake {{first.image}} black and white"))
    edit = shell.user_ns["edit"]
    assert edit.text.startswith("Offline edit")
    assert edit.image.size == (1024, 688)  # the 3:2 source's proportions at the default 1K
    grey = edit.image.convert("RGB")
    assert all(len(set(grey.getpixel((x, 40)))) == 1 for x in range(0, 1000, 97))
    assert kinds(cap) == ["sent", "text", "image", "footer"]  # {first.image} shown as sent
    # the same, attaching the image as an option and continuing the conversation
    ok(run_cell(shell, f"%%gemini {IMAGE} --image first.image --size 512 -o again\ninvert the colours"))
    assert shell.user_ns["again"].text.startswith("Offline edit")


def test_follow_up_prompts_edit_the_previous_image(shell):
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512\na green forest"))
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 -o r\nnow make it darker"))
    assert shell.user_ns["r"].text.startswith("Offline edit")
    ok(run_cell(shell, f"%%gemini {IMAGE} --size 512 -o r\nA mountain lake"))
    assert shell.user_ns["r"].text.startswith("Offline rendering")


# ----------------------------------------------------------------------------- bad input
def _huge(tmp_path: Path) -> str:
    path = tmp_path / "huge.wav"
    with open(path, "wb") as f:  # sparse: 21 MB on paper, nothing on disk
        f.truncate(21_000_000)
    return str(path)


def _odd(tmp_path: Path) -> str:
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 4)
    return str(path)


@pytest.mark.parametrize("options, prompt, words", [
    ("--image missing.png", "x", ["File not found: 'missing.png'"]),
    (f"--image {DATA / 'corrupt.png'}", "x", ["not a readable image"]),
    (f"--image {DATA / 'truncated.jpg'}", "x", ["not a readable image"]),
    (f"--image {DATA / 'table.csv'}", "x", ["is text/csv, not an image", "--file"]),
    ("--file {odd}", "x", ["application/octet-stream, which Gemini cannot read"]),
    ("--image ftp://example.com/a.png", "x", ["only http://, https:// and gs://"]),
    ("--image http:/broken", "x", ["not a valid URL"]),
    ("--image number", "x", ["The variable 'number' is an int, not an image"]),
    ("--file {huge}", "x", ["too large to send inline", "URL"]),
    ("", "Look at {bad_bytes}", ["not a readable image"]),
    ("--aspect 16x9", "x", ["--aspect '16x9' is not a supported aspect ratio", "16:9"]),
    ("--size 8K", "x", ["--size '8K' is not a supported image size", "1K, 2K, 4K"]),
    ("--image", "x", ["Option --image needs a value"]),
])
def test_bad_input_is_one_sentence_and_nothing_is_sent(shell, scripted, tmp_path, options, prompt, words):
    magics_of(shell).base_url = scripted.base_url
    shell.user_ns["number"] = 42
    shell.user_ns["bad_bytes"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40  # a PNG signature, then junk
    options = options.format(huge=_huge(tmp_path), odd=_odd(tmp_path))
    cap = run_cell(shell, f"%%gemini {IMAGE} {options}\n{prompt}")
    assert cap.error is not None
    message = cap.stdout.strip()
    assert message.startswith("GeminiError: ") and "\n" not in message and message.endswith("."), message
    assert all(w in message for w in words), message
    assert "Traceback" not in cap.stdout + cap.stderr
    assert scripted.requests == []


def test_many_inline_files_over_the_request_limit_are_refused_together(shell, scripted, tmp_path):
    magics_of(shell).base_url = scripted.base_url
    names = []
    for i in range(3):
        path = tmp_path / f"part{i}.wav"
        path.write_bytes((DATA / "tone.wav").read_bytes()[:44] + os.urandom(6_000_000))
        names.append(str(path))
    cap = run_cell(shell, "%%gemini " + " ".join(f"--file {n}" for n in names) + "\nx")
    assert "over the 20.0 MB limit" in cap.stdout and scripted.requests == []


# ----------------------------------------------------------------------------- saved notebook
def test_a_real_kernel_saves_the_generated_image_in_the_notebook(echo_server, tmp_path, kernel_env):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    cells = [
        setup_source(echo_server.base_url),
        "%%gemini -m gemini-3.1-flash-image --aspect 4:3 --size 512 -o r\nA lighthouse by the sea",
        "print(r.image.size, len(r.images))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    saved = run_notebook(nb, tmp_path / "images.ipynb",
                         resources={"metadata": {"path": str(tmp_path)}})
    outputs = saved.cells[1].outputs
    assert all(o.output_type == "display_data" for o in outputs)
    images = [o for o in outputs if "image/png" in o.data]
    assert len(images) == 1 and images[0].data["text/plain"] == "<PNG image 512x384>"
    img = Image.open(io.BytesIO(base64.b64decode(images[0].data["image/png"])))
    assert img.format == "PNG" and img.size == (512, 384)
    assert outputs[0].data["text/markdown"].startswith("Offline rendering")
    assert outputs[-1].data["text/markdown"].startswith("<details>")
    assert saved.cells[2].outputs[0].text.strip() == "(512, 384) 1"


def test_help_lists_the_media_options(shell):
    cap = run_cell(shell, "%%gemini?")
    for opt in ("--image", "--file", "--aspect", "--size", "--save", "PATH|URL|VAR"):
        assert opt in cap.stdout
