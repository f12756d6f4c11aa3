"""Every failure → one clear sentence that says what went wrong and how to fix it.

google-genai raises its Interactions errors from `google.genai._interactions` (BadRequestError,
RateLimitError, ...), which are not `google.genai.errors.APIError`; the fast stream path can also
surface raw httpx errors. They are recognised by status code and class name, so this module
never imports the SDK. Messages go through `redact.redact`, so no API key can leak.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from .redact import redact
from .stream import ADVANCING_STATUSES, StreamProtocolError

__all__ = ["GeminiError", "explain", "server_message", "stream_error_sentence",
           "failed_sentence", "outcome_sentence", "KEPT", "status_code", "is_connection_error"]

# Our own input checks raise these with one sentence as the message (args.py, prompt.py, and
# replay.py, which is not imported here because it loads httpx; the local engine's missing model;
# server_process's refused start): the message is the answer.
_SENTENCE_ERRORS = ("ArgsError", "PromptError", "CassetteError", "ModelNotFoundError",
                    "ServerRefusedError")

# Added to a sentence when some of the answer had already arrived.
KEPT = " (the partial answer above is kept, and this turn was not added to the conversation)"


class GeminiError(Exception):
    """A failure already explained in one sentence; IPython prints just that sentence."""

    def __init__(self, message: str, *, result: Any = None):
        super().__init__(redact(message))
        self.result = result

    def _render_traceback_(self) -> list[str]:
        return [f"GeminiError: {self}"]


def server_message(exc: BaseException) -> str:
    """The server's own error message from an SDK error body, if any."""
    body = getattr(exc, "body", None)
    msg = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message")
        elif isinstance(err, str):
            msg = err
    elif isinstance(body, str) and body.strip():
        msg = body.strip()
    if not msg:
        msg = getattr(exc, "message", None) or str(exc)
    return redact(_one_line(msg)).rstrip(".")


def _one_line(msg: Any) -> str:
    """A server's message on one line, cut to 200 characters: it goes inside our sentence."""
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= 200 else msg[:199] + "…"


def status_code(exc: BaseException) -> Optional[int]:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


_CONNECTION_NAMES = {
    "APIConnectionError", "ConnectError", "ConnectTimeout", "ReadError", "RemoteProtocolError",
    "ReadTimeout", "NetworkError", "WriteError", "APITimeoutError", "TimeoutException",
    "PoolTimeout", "ConnectionError", "ConnectionResetError", "IncompleteRead",
}


def is_connection_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & _CONNECTION_NAMES)


def explain(
    exc: BaseException,
    *,
    model: Optional[str] = None,
    where: Optional[str] = None,
    partial: bool = False,
    continued: bool = False,
) -> str:
    """One sentence for `exc`. `where` names the backend, `partial` says text had streamed,
    `continued` says the request continued an earlier interaction."""
    kept = KEPT if partial else ""
    if isinstance(exc, GeminiError):
        return str(exc)
    if any(c.__name__ in _SENTENCE_ERRORS for c in type(exc).__mro__):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return f"Stopped{kept}; re-run the cell to ask again."
    if isinstance(exc, StreamProtocolError):
        return f"{str(exc).rstrip('.')}{kept}; check that GeminiMagics.base_url points at a Gemini Interactions endpoint."
    code = status_code(exc)
    name = type(exc).__name__
    if code is not None and code >= 400:
        msg = server_message(exc)
        if code == 400:
            return (f"The request was rejected as invalid (400: {msg}); check the cell's options "
                    f"(model, --temperature, --max-tokens, --thinking) and re-run.")
        if code == 401:
            return ("The API key was not accepted (401); set a valid key in GEMINI_API_KEY "
                    "(from https://aistudio.google.com/apikey), or unset it to use the local "
                    "offline model.")
        if code == 403:
            return (f"Access was denied (403: {msg}); check that the API key's project may use "
                    f"the Gemini API and this model, or pick another model with -m.")
        if code == 404:
            low = msg.lower()
            if continued and "model" not in low:
                return ("The previous turn of this conversation no longer exists on the server "
                        "(404); run %gemini reset or use --new to start a new conversation.")
            shown = f"{model!r} " if model else ""
            return (f"Model {shown}was not found (404: {msg}); pick an existing model with -m "
                    f"or %gemini model NAME, e.g. gemini-3.5-flash.")
        if code == 408:
            return f"The server timed out (408){kept}; re-run the cell."
        if code == 409:
            return f"The server reported a conflict (409: {msg}){kept}; re-run the cell."
        if code == 429 and msg.startswith("This key "):  # a classroom server's own sentence
            return f"{msg.rstrip('.')} (429)."  # not the generic advice: -m would not help
        if code == 429:
            return (f"Too many requests or quota exhausted (429: {msg}); wait a minute and re-run, "
                    f"or pick a model with more quota using -m.")
        if code >= 500:
            return (f"The server had an internal error ({code}: {msg}){kept}; this is usually "
                    f"temporary, so re-run the cell in a moment.")
        return f"The request failed ({code}: {msg}); check the cell's options and re-run."
    if is_connection_error(exc):
        target = where or "the server"
        if "Timeout" in name or "timed out" in str(exc).lower():
            return (f"The request to {target} timed out{kept}; re-run the cell, or raise "
                    f"GeminiMagics.timeout.")
        if partial:
            return (f"The connection to {target} was lost in the middle of the answer{kept}; "
                    f"re-run the cell to try again.")
        return (f"Could not reach {target} ({redact(exc) or name}); check the network "
                f"connection and GeminiMagics.base_url, then re-run.")
    if name == "APIError" and (code is None or code < 400):  # the SDK got an answer it could not read
        return _not_the_api(exc, where)
    if name == "ContinuationInterruptedError":
        return f"The answer was cut off while being continued{kept}; re-run the cell."
    msg = redact(str(exc)).strip() or name
    return (f"Unexpected {name}: {msg}{kept}; please report this, with the cell, to the "
            f"gemini-magics issue tracker.")


def _not_the_api(exc: BaseException, where: Optional[str]) -> str:
    """A 2xx answer that is not the API (a proxy's or a sign-in page, a JSON list...)."""
    cause = str(exc.__cause__ or "")
    m = re.search(r"Content-Type\s+([\w.+-]+/[\w+-]+(?:\.[\w+-]+)*)", cause)
    kind = f"a {m.group(1)} answer" if m else "an answer"
    body = re.sub(r"<[^>]*>", " ", str(getattr(exc, "body", None) or exc))
    body = _one_line(redact(" ".join(body.split())))[:80]
    shown = f": {body!r}" if body else ""
    return (f"{where or 'The server'} sent {kind} that is not the Gemini Interactions API{shown}; "
            f"check that GeminiMagics.base_url points at a Gemini Interactions endpoint (a proxy "
            f"or a sign-in page may be answering instead).")


def stream_error_sentence(error: dict, *, partial: bool = False) -> str:
    """One sentence for an `error` event or a failed interaction's `errors[0]`."""
    kept = KEPT if partial else ""
    code = error.get("code")
    msg = _one_line(error.get("message") or "no message")
    label = f" ({code})" if code not in (None, "") else ""
    return redact(
        f"The model stopped with an error{label}: {msg.rstrip('.')}{kept}; re-run the cell, "
        f"or try another model with -m."
    )


def failed_sentence(errors: Any, *, partial: bool = False) -> str:
    """One sentence for a `failed` interaction, from its `errors` list (which may be empty)."""
    errs = errors or [{"message": "the interaction failed"}]
    first = errs[0] if isinstance(errs[0], dict) else {"message": str(errs[0])}
    return stream_error_sentence(first, partial=partial)


def outcome_sentence(status: Optional[str], *, done: bool, stream_error: Optional[dict] = None,
                     errors: Any = None, partial: bool = False,
                     background: bool = False) -> Optional[str]:
    """The one status → sentence policy for a finished turn (None: nothing went wrong), for
    foreground runs and background jobs alike. A cancelled turn is a stop, not an error."""
    kept = KEPT if partial else ""
    if stream_error is not None:
        return stream_error_sentence(stream_error, partial=partial)
    if not done:
        return (f"The answer stopped before the server said it was complete{kept}; the "
                f"connection was probably lost, so re-run the cell to try again.")
    if status == "failed":
        return failed_sentence(errors, partial=partial)
    if status == "budget_exceeded":
        return ("The interaction ran out of its budget before finishing; raise the budget or "
                "simplify the request, then re-run.")
    if status == "requires_action" and background:
        return ("The background job stopped at a function call; run function calling in the "
                "foreground with --functions.")
    if status not in ADVANCING_STATUSES and status != "cancelled":
        return f"The interaction ended with status {status!r}; re-run the cell."
    return None
