"""The result of one `%%gemini` run: what `--out VAR` and `_gemini` hold.

Plain data first (`.text`, `.steps`, `.usage`, `.id`), the SDK's `Interaction` object on
demand (`.interaction`, built once from the accumulated wire dict the first time it is read,
so a fast stream never pays for SDK models it does not need).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .client import interaction_from_dict
from .render import footer_markdown

__all__ = ["GeminiResult"]


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
    interaction_data: dict = field(default_factory=dict, repr=False)
    _interaction: Any = field(default=None, repr=False)
    _images: Optional[list] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the turn completed (and so was added to the conversation)."""
        return not self.stopped and self.error is None

    @property
    def interaction(self) -> Any:
        """The `google.genai` Interaction object (built once, lazily)."""
        if self._interaction is None and self.interaction_data:
            self._interaction = interaction_from_dict(self.interaction_data)
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
    def total_tokens(self) -> Optional[int]:
        return self.usage.get("total_tokens") if self.usage else None

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        body = self.answer or self.text or "*(no text in the answer)*"
        return body + "\n\n" + footer_markdown(self)

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ("error" if self.error else self.status)
        short = self.text if len(self.text) <= 60 else self.text[:59] + "…"
        return f"GeminiResult(id={self.id!r}, status={state!r}, text={short!r})"
