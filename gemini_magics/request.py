"""What one `%%gemini` run asks, as plain data: the Request and the create() body it makes.

The option fields (model, temperature, --tools declarations, ...) come from the options table
(`options.request_fields()`); the fields here are the ones no option fills directly: the
prompt, and what the cell pipeline (cell.py) resolves against the notebook.
"""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Optional

from . import options

__all__ = ["Request", "function_tool"]

# model, system, temperature, ..., agent, environment: one field per request row of the table.
_OptionFields = make_dataclass("RequestOptions", options.request_fields())
_OptionFields.__module__ = __name__


@dataclass
class Request(_OptionFields):
    """Everything one `%%gemini` run needs, as plain data (settings already merged in).

    `images`/`files` hold the --image/--file values as typed (paths, URLs, variable names;
    made into content parts by cell.build_parts), `aspect`/`size` are normalised ("16:9",
    "1K"), `tools` holds the --tools declarations and `functions`/`schema` the names as typed
    (resolved against the notebook by cell.resolve_names)."""

    text: str = ""                    # the prompt as typed (before interpolation)
    parts: list = field(default_factory=list)  # interpolated prompt: str and content dicts
    # generation_config and top-level body fields merged in as given.
    generation_extra: dict = field(default_factory=dict)
    body_extra: dict = field(default_factory=dict)
    callables: list = field(default_factory=list)   # --functions resolved to Python callables
    schema_obj: Any = None            # --schema resolved (pydantic model, dataclass, dict, ...)
    response_format: Optional[dict] = None

    def generation_config(self) -> dict:
        cfg: dict = {}
        if self.temperature is not None:
            cfg["temperature"] = self.temperature
        if self.max_tokens is not None:
            cfg["max_output_tokens"] = self.max_tokens
        if self.thinking:
            cfg["thinking_level"] = self.thinking
        if self.show_thoughts:
            cfg["thinking_summaries"] = "auto"
        cfg.update(self.generation_extra)
        return cfg

    def body(self, user_step: dict, previous_interaction_id: Optional[str] = None,
             history: Optional[list] = None) -> dict:
        """The create() keyword arguments (wire field names) for this request."""
        body: dict[str, Any] = {"agent": self.agent} if self.agent else {"model": self.model}
        if history:
            body["input"] = list(history) + [user_step]
        elif len(user_step["content"]) == 1 and user_step["content"][0].get("type") == "text":
            body["input"] = user_step["content"][0]["text"]
        else:
            body["input"] = [user_step]
        if previous_interaction_id:
            body["previous_interaction_id"] = previous_interaction_id
        if self.system:
            body["system_instruction"] = self.system
        cfg = self.generation_config()
        if cfg and not self.agent:  # agents take no generation_config (the SDK refuses it)
            body["generation_config"] = cfg
        tools = list(self.tools) + [function_tool(f) for f in self.callables]
        if tools:
            body["tools"] = tools
        formats = [dict(self.response_format)] if self.response_format else []
        if self.aspect or self.size:  # the current form; generation_config.image_config is deprecated
            from .images import image_response_format  # deferred: images loads PIL

            formats.append(image_response_format(self.aspect, self.size))
        if formats:
            body["response_format"] = formats[0] if len(formats) == 1 else formats
        if self.environment:
            body["environment"] = self.environment
        if self.stateless:
            body["store"] = False
        body.update(self.body_extra)
        return body


def function_tool(fn: Any) -> dict:
    """The function declaration for a callable (functions.function_declaration, cached)."""
    from .functions import function_declaration  # deferred: functions loads pydantic

    return function_declaration(fn)
