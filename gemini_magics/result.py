"""The result of one `%%gemini` run: what `--out VAR` and `_gemini` hold.

Plain data first (`.text`, `.steps`, `.usage`, `.id`), the SDK's `Interaction` object on
demand (`.interaction`, built once from the accumulated wire dict the first time it is read,
so a fast stream never pays for SDK models it does not need).

`LiveResult` is the same object for an answer still streaming (`%%gemini --ui -o VAR` binds it
at once): `.text`/`.answer` fill in as the answer arrives, `.wait()` returns when it has ended,
and from then on it is the finished result, field for field.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from .compat import sdk_interaction_from_dict
from .render import footer_markdown, hard_breaks

__all__ = ["GeminiResult", "LiveResult"]


@dataclass(eq=False)
class GeminiResult:
    text: str = ""
    steps: list = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    id: Optional[str] = None
    status: Optional[str] = None
    model: Optional[str] = None
    elapsed: float = 0.0
    stopped: bool = False
    error: Optional[str] = None
    thoughts: str = ""
    answer: str = ""  # all model text, as displayed (text is the SDK's output_text)
    value: Any = None  # --schema: the parsed answer (a model instance for pydantic models)
    notes: list = field(default_factory=list)  # one-line remarks shown under the answer
    skipped_events: int = 0  # `data:` lines that were not JSON, skipped (the footer says so)
    code: Optional[str] = None  # --code / %gemini fix: the answer's code (also put in a new cell)
    # pricing.CostDetail: the answer's price, its parts, tier and source (set once priced)
    cost_detail: Any = field(default=None, repr=False)
    interaction_data: dict = field(default_factory=dict, repr=False)
    _interaction: Any = field(default=None, repr=False)
    _images: Optional[list] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the turn completed (and so was added to the conversation)."""
        return not self.stopped and self.error is None

    @property
    def done(self) -> bool:
        """True once the answer has ended (always, but for a LiveResult still streaming)."""
        return True

    def wait(self, timeout: Optional[float] = None) -> "GeminiResult":
        """The finished result: this one (a LiveResult first waits for its answer to end)."""
        return self

    @property
    def interaction(self) -> Any:
        """The `google.genai` Interaction object (built once, lazily)."""
        if self._interaction is None and self.interaction_data:
            self._interaction = sdk_interaction_from_dict(self.interaction_data)
        return self._interaction

    @property
    def environment_id(self) -> Optional[str]:
        """The environment an agent ran in (`--agent ... --environment remote`), if any."""
        return self.interaction_data.get("environment_id") if self.interaction_data else None

    @property
    def function_calls(self) -> list:
        """The model's function_call steps (wire dicts: id, name, arguments), in order."""
        return [s for s in self.steps if s.get("type") == "function_call"]

    @property
    def function_results(self) -> list:
        """The function_result steps sent back by `--functions` (is_error set on failures)."""
        return [s for s in self.steps if s.get("type") == "function_result"]

    @property
    def image_parts(self) -> list:
        """The answer's image content items (wire dicts: type, data, mime_type), in order."""
        return [item for step in self.steps if step.get("type") == "model_output"
                for item in step.get("content") or []
                if isinstance(item, dict) and item.get("type") == "image"]

    @property
    def images(self) -> list:
        """The answer's images as PIL images (decoded once, on first use)."""
        if self._images is None:
            from .images import decode_image  # deferred: PIL

            # Images delivered as a link (`uri`) cannot be decoded here and are left out.
            self._images = [decode_image(part) for part in self.image_parts if part.get("data")]
        return self._images

    @property
    def image(self) -> Any:
        """The last image (like the SDK's `output_image`, but a PIL image), or None."""
        images = self.images
        return images[-1] if images else None

    def save_images(self, path_or_dir: Any, stem: str = "gemini") -> list:
        """Write the answer's images (original bytes when the suffix matches); returns the paths."""
        from .images import save_images  # deferred: PIL

        return save_images(self.image_parts, path_or_dir, stem=stem)

    @property
    def cost(self) -> Optional[float]:
        """The answer's price in USD (None when unknown or not priced): see `cost_detail`."""
        detail = self.cost_detail
        return detail.total if detail is not None else None

    @property
    def total_tokens(self) -> Optional[int]:
        return self.usage.get("total_tokens") if self.usage else None

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        body = hard_breaks(self.answer or self.text) or "*(no text in the answer)*"
        return body + "\n\n" + footer_markdown(self)

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ("error" if self.error else self.status)
        short = self.text if len(self.text) <= 60 else self.text[:59] + "…"
        return f"GeminiResult(id={self.id!r}, status={state!r}, text={short!r})"


class LiveResult(GeminiResult):
    """The result of an answer still streaming (`%%gemini --ui -o VAR`, panel turns).

    While it streams, `.text` and `.answer` hold the answer so far, `.model` the request's
    model, `.done` and `.ok` are False; `.wait(timeout)` blocks until the answer has ended and
    been written out. Then it is filled with the finished result's fields (`fill`), so it is
    the usual GeminiResult: the same object stays in `VAR`, `_gemini` and `%gemini last`.
    """

    def __init__(self, model: Optional[str] = None, ended: Optional[threading.Event] = None):
        super().__init__(model=model, status="in_progress")
        self._ended = ended if ended is not None else threading.Event()
        self._filled = False

    @property
    def done(self) -> bool:
        return self._filled and self._ended.is_set()

    @property
    def ok(self) -> bool:
        return self._filled and super().ok

    def wait(self, timeout: Optional[float] = None) -> "LiveResult":
        """Wait (at most `timeout` seconds) until the answer has ended and been written out;
        returns this result (check `.done` after a timeout)."""
        self._ended.wait(timeout)
        return self

    def show_progress(self, text: str, ident: Optional[str] = None) -> None:
        """The answer so far (called by the thread that streams it)."""
        if not self._filled:
            self.answer = self.text = text
            if ident:
                self.id = ident

    def fill(self, final: GeminiResult) -> "LiveResult":
        """Become `final`: every field copied, so readers see the finished result."""
        for f in fields(GeminiResult):
            setattr(self, f.name, getattr(final, f.name))
        self._filled = True
        return self

    def __repr__(self) -> str:
        if self.done:
            return super().__repr__()
        short = self.answer if len(self.answer) <= 60 else "…" + self.answer[-59:]
        return f"GeminiResult(streaming, model={self.model!r}, text so far={short!r})"

    def _repr_markdown_(self) -> str:
        if self.done:
            return super()._repr_markdown_()
        return ((self.answer or "") + "\n\n*(still streaming; `.wait()` returns when the answer "
                "has ended)*")

