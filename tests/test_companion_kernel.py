"""The companion in a real ipykernel: the cell log sees what the kernel's own streams and display
publisher carry, `fix`/`--code` reach the frontend as a set_next_input payload, and `--confirm`
asks through the kernel's stdin channel (and denies when the frontend has no stdin)."""
import time

import pytest

from kernel_fixtures import (KERNEL_TIMEOUT, Kernel, errors_of, kernel_env,  # noqa: F401
                             setup_source, stream_text)

pytestmark = pytest.mark.slow

WEATHER = ("calls = []\ndef get_weather(city: str) -> dict:\n"
           "    '''Current weather for a city.'''\n"
           "    calls.append(city)\n    return {'city': city, 'temp': 21}")


@pytest.fixture()
def kernel(kernel_env, echo_server):  # noqa: F811
    k = Kernel()
    k.run_ok(setup_source(echo_server.base_url))
    yield k
    k.close()


def _reply(k: Kernel, msg_id: str) -> dict:
    deadline = time.monotonic() + KERNEL_TIMEOUT
    while time.monotonic() < deadline:
        msg = k.kc.get_shell_msg(timeout=KERNEL_TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]
    raise AssertionError("no execute_reply")


def _markdown(msgs) -> str:
    """The final text of every Markdown output (display updates applied)."""
    shown: dict = {}
    for m in msgs:
        if m["msg_type"] in ("display_data", "update_display_data"):
            data = m["content"]["data"]
            key = (m["content"].get("transient") or {}).get("display_id") or id(m)
            shown[key] = data.get("text/markdown", "")
    return "\n".join(shown.values())


def test_context_and_fix_in_a_kernel(kernel):
    kernel.run_ok("a = 21\nprint('a doubled is', a * 2)")
    kernel.run_ok("from IPython.display import Markdown\ndisplay(Markdown('**shown**'))")
    kernel.run("total = a + missing_name")
    msgs = kernel.run_ok("%%gemini --context all\nWhat happened?")
    assert "context: 3 cells, ~" in stream_text(msgs)
    shown = _markdown(msgs)
    assert "a doubled is 42" in shown and "**shown**" in shown and "NameError" in shown
    msg_id = kernel.send("%gemini fix")
    msgs = kernel.collect(msg_id)
    assert not errors_of(msgs)
    payload = _reply(kernel, msg_id)["payload"]
    offered = [p for p in payload if p.get("source") == "set_next_input"]
    assert offered and offered[0]["text"] == "total = a + missing_name"
    assert offered[0]["replace"] is False


def test_confirm_asks_on_stdin_and_denies_without_it(kernel):
    kernel.run_ok(WEATHER)
    # A frontend without stdin (nbclient, allow_stdin false): the call is denied, the model told.
    msgs = kernel.run_ok("%%gemini --functions get_weather --confirm -o r\nParis")
    assert "could not be confirmed" in _markdown(msgs)
    assert kernel.stdout("print(calls)").strip() == "[]"
    # A frontend with stdin: the kernel asks, the user allows.
    content = {"code": "%%gemini --functions get_weather --confirm -o r\nParis", "silent": False,
               "store_history": True, "user_expressions": {}, "allow_stdin": True,
               "stop_on_error": True}
    msg = kernel.kc.session.msg("execute_request", content)
    kernel.kc.shell_channel.send(msg)
    request = kernel.kc.get_stdin_msg(timeout=KERNEL_TIMEOUT)
    assert request["msg_type"] == "input_request"
    assert 'get_weather(city="Paris")' in request["content"]["prompt"]
    kernel.kc.input("y")
    kernel.collect(msg["header"]["msg_id"])
    assert kernel.stdout("print(calls)").strip() == "['Paris']"
