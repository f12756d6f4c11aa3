"""The `%%gemini` cell pipeline around a run, without IPython: what the magic and the widgets share.

`complete` turns a parsed Request (args.parse) into a checked one: the prompt interpolated with
its media, `--functions` and `--schema` looked up in the notebook; `prepare` parses a magic line
and cell first. Every problem is one GeminiError sentence before anything is sent. `finish` does
the bookkeeping after a run: `_gemini`, `%gemini last`, `--out VAR` and `--save`.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from . import companion
from .args import ArgsError, parse, parse_line, with_parts
from .catalog import unknown_name_warning
from .errors import GeminiError, explain
from .media import MediaError, check_inline_size, is_media_value, media_part, media_parts
from .prompt import Prompt, PromptError, interpolate_parts
from .request import Request, function_tool

__all__ = ["prepare", "complete", "build_parts", "resolve_names", "finish", "assign_out", "save_images_line",
           "backend_failure", "warn_unknown_name"]

def prepare(line: str, cell: Optional[str], settings: Mapping[str, Any], ns: Any) -> Request:
    """The Request of a `%%gemini` cell (`cell` None: a `%gemini PROMPT` line), with `settings`
    filling the options not given and `ns` (the notebook's variables) the prompt, media,
    --functions and --schema. Raises GeminiError (one sentence) on bad options, prompt or media."""
    try:
        request = parse_line(line, settings) if cell is None else parse(line, cell, settings)
    except ArgsError as exc:
        raise GeminiError(str(exc)) from None
    return complete(request, ns)


def complete(request: Request, ns: Any) -> Request:
    """`request` (as args.parse made it) with its prompt parts and the notebook objects its
    options name; GeminiError (one sentence) on a bad prompt, media, function or schema."""
    try:
        request = with_parts(request, build_parts(request, ns))
        resolve_names(request, ns)
    except (ArgsError, PromptError, MediaError, companion.CompanionError) as exc:
        raise GeminiError(str(exc)) from None
    return request


def warn_unknown_name(request: Any, offline: bool, session: Any) -> Optional[str]:
    """Offline (`offline`: the local model answers), the model or agent answers whatever it is
    called, so a typo would show only once a key is set: print one line for a name the API
    does not know, once per name in `session`. Returns the line (None when nothing was said)."""
    kind, name = ("agent", request.agent) if getattr(request, "agent", None) else \
        ("model", getattr(request, "model", None))
    if not name or not offline:
        return None
    line = unknown_name_warning(name, kind)
    if line is None or not session.once((kind, name)):
        return None
    print(line)
    return line


def build_parts(request: Any, user_ns: Any) -> list:
    """The prompt as content: --context's cells first, then --image and --file attachments
    (Gemini's advice for media prompts), then the cell text with `{var}` media (PIL images,
    media bytes) placed where they are written; `fix` makes the text from the failing cell,
    --code asks for code after it. Every part is checked before anything is sent: MediaError
    on bad input, CompanionError when there is nothing to fix."""
    text = request.text
    log = companion.find_log() if (request.fix or request.context) else None
    if request.fix:  # the failing cell makes the prompt; the cell's own words are added
        text = companion.fix_text(log, user_ns, interpolate_parts(text, user_ns).text,
                                  companion.lang_of(request))
    elif request.code:
        text += companion.code_instruction(request.code)
    # the fix prompt quotes code: its braces are not {references}
    prompt = Prompt([text]) if request.fix else interpolate_parts(text, user_ns,
                                                                    keep=is_media_value)
    parts: list = []
    if request.context:
        context, note = companion.context_parts(log, request.context, request.context_tokens)
        print(note)
        parts += context
    if request.images:
        parts += media_parts(request.images, kind="image", user_ns=user_ns)
    if request.files:
        parts += media_parts(request.files, kind="file", user_ns=user_ns)
    for p in prompt.parts:
        parts.append(p if isinstance(p, str) else media_part(p))
    check_inline_size([p for p in parts if isinstance(p, dict)])
    merged: list = []  # neighbouring texts as one (a text-only prompt stays one string)
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return merged or [""]


def lookup_dotted(option: str, name: str, user_ns: Mapping[str, Any]) -> Any:
    """The notebook object an option names (`NAME` or `NAME.attr.attr`), or one sentence."""
    head, *rest = name.split(".")
    if head not in user_ns:
        raise ArgsError(f"{option}: {head!r} is not defined in the notebook; run the cell that "
                        f"defines it or fix the name.")
    obj = user_ns[head]
    for attr in rest:
        if not hasattr(obj, attr):
            raise ArgsError(f"{option}: {name!r} does not exist; fix the name.")
        obj = getattr(obj, attr)
    return obj


def resolve_names(request: Any, user_ns: Any) -> None:
    """--functions and --schema: look the names up in the notebook and check them, so a bad
    name is one sentence before anything is sent. Fills request.callables / schema_obj;
    ArgsError otherwise."""
    if request.functions:
        from .functions import resolve_functions  # deferred: functions loads pydantic

        try:
            request.callables = resolve_functions(",".join(request.functions), user_ns)
            if request.confirm_functions:  # asked about before each call (loop.py)
                from .loop import confirming  # deferred: loop loads functions (pydantic)

                request.callables = [confirming(fn) for fn in request.callables]
            for fn in request.callables:
                function_tool(fn)  # a parameter type without a JSON schema fails here
        except ValueError as exc:
            raise ArgsError(str(exc)) from None
    if request.schema:
        from .schema import SchemaError, response_format_for  # deferred: schema loads pydantic

        obj = lookup_dotted("--schema", request.schema, user_ns)
        try:
            request.response_format = response_format_for(obj, request.schema)
        except SchemaError as exc:
            raise ArgsError(str(exc)) from None
        request.schema_obj = obj


def finish(request: Any, result: Any, ns: Any, owner: Any) -> str:
    """After a run: the result goes to `_gemini`, `owner.last_result` (`%gemini last`; the
    Session, or the magics for the widgets) and `--out VAR`, the code of a --code or fix
    answer into a new cell, and `--save` writes its images. Returns what was done in one line
    each ('' for nothing); GeminiError (one sentence) if the images cannot be written."""
    owner.last_result = result
    ns["_gemini"] = result
    said = [companion.CODE_NOTE] if _offer_code(request, result) else []
    assign_out(ns, request, result)
    if request.save and result.image_parts:
        from .images import ImageError  # deferred: images loads PIL

        try:
            said.append(save_images_line(result, request.save))
        except ImageError as exc:
            raise GeminiError(str(exc), result=result) from None
    elif request.save and result.ok:
        said.append("Nothing saved: the answer has no images (image models such as "
                    "gemini-3.1-flash-image draw them).")
    return "\n".join(said)


def _offer_code(request: Any, result: Any) -> bool:
    """--code and fix: the answer's code into `result.code` and a new cell below (not run)."""
    lang = companion.lang_of(request)
    if lang is None or not result.ok:
        return False
    result.code = companion.extract_code(result.text or result.answer, lang)
    return companion.offer_code(result.code)


def assign_out(ns: Any, request: Any, result: Any) -> None:
    """`--out VAR`: the result object, the code with --code, or with --schema the parsed
    value (only when it parsed)."""
    if not request.out:
        return
    if getattr(request, "code", None) and getattr(result, "code", None) is not None:
        ns[request.out] = result.code
    elif request.schema_obj is None:
        ns[request.out] = result
    elif result.ok and result.value is not None:
        ns[request.out] = result.value


def save_images_line(result: Any, target: str) -> str:
    """Write the answer's images to `target` and say where in one line (cells and widgets);
    ImageError (one sentence) if they cannot be written."""
    paths = result.save_images(target)
    return f"Saved {len(paths)} image{'s' if len(paths) != 1 else ''}: " + ", ".join(map(str, paths))


def backend_failure(exc: BaseException) -> str:
    """The sentence for a backend that could not be started (cells and the widgets say the same)."""
    return (f"Could not start the local offline server ({explain(exc).rstrip('.')}); set "
            f"GEMINI_API_KEY to use the real API, or %gemini engine echo for a test echo.")
