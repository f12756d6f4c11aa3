"""Settings refuse values that cannot work, with one sentence saying why (and keep the old value)."""
import pytest

from magics_fixtures import magics_of, run_cell, shell  # noqa: F401


@pytest.mark.parametrize("name, value, words", [
    ("timeout", "-1", "timeout must be at least 0.1 seconds"),
    ("retries", "-3", "retries must be at least 0"),
    ("update_interval", "-1", "update_interval must be at least 0.01 seconds"),
    ("function_timeout", "0", "function_timeout must be at least 0.1 seconds"),
    ("model", "''", "a model name is one word"),
])
def test_a_setting_that_cannot_work_is_refused(shell, name, value, words):
    before = getattr(magics_of(shell), name)
    cap = run_cell(shell, f"%gemini {name} {value}")
    assert cap.error is not None and words in str(cap.error)
    assert getattr(magics_of(shell), name) == before
