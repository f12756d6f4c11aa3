"""A server that reflects the API key into its answer: the key is in nothing we show or keep."""
from magics_fixtures import magics_of, run_cell, scripted, sse_events_for, shell  # noqa: F401

FAKE_KEY = "AIzaSyD-fake-key-0123456789abcdefghijklm"


def test_a_reflected_key_is_not_in_the_result(shell, scripted, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    magics_of(shell).base_url = scripted.base_url
    scripted.script = [{"sse": sse_events_for(["Your key is ", FAKE_KEY, ", keep it safe."])},
                       {"json": {"id": "v1_json", "status": "completed", "object": "interaction",
                                 "model": "m", "steps": [{"type": "model_output", "content": [
                                     {"type": "text", "text": f"again {FAKE_KEY}"}]}]}}]
    for line in ("-o r", "-o r --no-stream"):
        cap = run_cell(shell, f"%%gemini {line}\nwhat is my key?")
        assert cap.error is None, cap.error
        r = shell.user_ns["r"]
        kept = r.text + r.answer + repr(r.steps) + repr(r.interaction_data)
        kept += r.interaction.model_dump_json()
        assert FAKE_KEY not in kept and "***" in r.answer
