"""The wire body a Request becomes (what the SDK sends for a cell)."""
from gemini_magics.args import parse
from gemini_magics.conversation import user_step


def body_of(line: str, text: str = "a lighthouse") -> dict:
    request = parse(line, text, {})
    return request.body(user_step([text]))


def test_aspect_and_size_go_in_response_format_not_the_deprecated_image_config():
    body = body_of("-m gemini-3.1-flash-image --aspect 16:9 --size 1k")
    assert body["response_format"] == {"type": "image", "aspect_ratio": "16:9", "image_size": "1K"}
    assert "image_config" not in body.get("generation_config", {})


def test_an_image_entry_joins_a_schema_entry_in_a_list():
    request = parse("-m gemini-3.1-flash-image --size 512", "a map", {})
    request.response_format = {"type": "text", "mime_type": "application/json",
                               "schema": {"type": "object"}}
    body = request.body(user_step(["a map"]))
    assert body["response_format"] == [request.response_format,
                                       {"type": "image", "image_size": "512"}]


def test_no_image_options_no_response_format():
    assert "response_format" not in body_of("")
