"""The conversation: a tree of turns, so re-running a cell forks instead of stacking turns.

Each completed turn remembers its parent turn and the cell that made it. A cell run for the
first time continues from the newest turn (the head). A cell that runs again continues from
the newest run of the cell its previous run followed, so editing and re-running cells top to
bottom replays the notebook's conversation instead of appending duplicates. Without cell ids
(plain IPython, nbconvert) every run simply continues the head: a linear chain.

Stateful turns continue with `previous_interaction_id`; stateless ones (`store=false`) re-send
the whole chain: each turn's user_input step plus every step the model returned, as received.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["Turn", "Conversation", "current_cell_id", "user_step"]


def user_step(parts: list) -> dict:
    """The `user_input` step for a prompt made of text (and, later, media content dicts)."""
    content = []
    for p in parts:
        if isinstance(p, str):
            if p:
                content.append({"type": "text", "text": p})
        elif isinstance(p, dict):
            content.append(p)
    return {"type": "user_input", "content": content}


@dataclass
class Turn:
    key: int
    parent: Optional[int]
    cell_id: Optional[str]
    interaction_id: Optional[str]
    stored: bool
    prompt: str
    model: str
    user_step: dict
    steps: list = field(default_factory=list)
    text: str = ""

    def summary(self, width: int = 60) -> str:
        def short(s: str) -> str:
            s = " ".join(s.split())
            return s if len(s) <= width else s[: width - 1] + "…"
        return f"{short(self.prompt)!r} → {short(self.text)!r}"


class Conversation:
    """All turns of one notebook session; see the module docstring for the forking rule.

    A cell's thread and background pollers (jobs.py, live answers) start and finish turns at
    the same time, so every read and change holds `lock`: a turn is recorded (and becomes the
    head) in one step, and a reset never meets half a turn.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._clear()

    def _clear(self) -> None:
        self.turns: dict[int, Turn] = {}
        self.head: Optional[int] = None
        self._keys = itertools.count(1)
        self._cell_turn: dict[str, int] = {}  # cell id -> its newest turn (whose parent it followed)

    # -- choosing the parent ----------------------------------------------------------------
    def parent_for(self, cell_id: Optional[str] = None, new: bool = False) -> Optional[Turn]:
        """The turn a new run of `cell_id` continues from (None: a fresh conversation)."""
        if new:
            return None
        with self.lock:
            if cell_id and cell_id in self._cell_turn:
                followed = self.turns[self._cell_turn[cell_id]].parent
                parent = self.turns.get(followed) if followed is not None else None
                parent_cell = parent.cell_id if parent is not None else None
                if (parent_cell is not None and parent_cell in self._cell_turn
                        and parent_cell != cell_id):
                    return self.turns.get(self._cell_turn[parent_cell])
                return parent
            return self.turns.get(self.head) if self.head is not None else None

    def chain(self, turn: Optional[Turn] = None) -> list[Turn]:
        """Turns from the root to `turn` (default: the head)."""
        with self.lock:
            if turn is None:
                turn = self.turns.get(self.head) if self.head is not None else None
            out: list[Turn] = []
            seen = set()
            while turn is not None and turn.key not in seen:
                seen.add(turn.key)
                out.append(turn)
                turn = self.turns.get(turn.parent) if turn.parent is not None else None
        return out[::-1]

    def context(self, parent: Optional[Turn], stateless: bool) -> tuple[Optional[str], list]:
        """(previous_interaction_id, history steps to send before the new user step)."""
        if parent is None:
            return None, []
        if not stateless and parent.stored and parent.interaction_id:
            return parent.interaction_id, []
        history: list = []
        for t in self.chain(parent):
            history.append(t.user_step)
            history.extend(t.steps)
        return None, history

    # -- recording -------------------------------------------------------------------------
    def record(
        self,
        *,
        parent: Optional[Turn],
        cell_id: Optional[str],
        interaction_id: Optional[str],
        stored: bool,
        prompt: str,
        model: str,
        user_step: dict,
        steps: list,
        text: str = "",
    ) -> Turn:
        """Add a completed turn after `parent`; it becomes the head."""
        with self.lock:
            turn = Turn(
                key=next(self._keys), parent=parent.key if parent else None, cell_id=cell_id,
                interaction_id=interaction_id, stored=stored, prompt=prompt, model=model,
                user_step=user_step, steps=list(steps), text=text,
            )
            self.turns[turn.key] = turn
            self.head = turn.key
            if cell_id:
                self._cell_turn[cell_id] = turn.key
            return turn

    def reset(self) -> None:
        """Forget every turn: the next cell starts a new conversation."""
        with self.lock:
            self._clear()

    def history_text(self) -> str:
        """The chain that the next new cell would continue, one line per turn."""
        chain = self.chain()
        if not chain:
            return "No conversation yet: the next %%gemini cell starts one."
        lines = [f"Conversation ({len(chain)} turn{'s' if len(chain) != 1 else ''}, oldest first):"]
        for i, t in enumerate(chain, 1):
            where = "stored" if t.stored else "stateless"
            ident = t.interaction_id or "-"
            lines.append(f"{i:>3}. {t.summary()}  [{t.model}, {where}, id {ident}]")
        return "\n".join(lines)


def current_cell_id(shell: Any) -> Optional[str]:
    """The id of the executing cell, from the kernel's parent header metadata (`cellId`, sent
    by JupyterLab, Notebook 7 and VS Code); None outside a kernel or when not sent."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent() if hasattr(kernel, "get_parent") else kernel._parent_header
    except Exception:  # noqa: BLE001 - an odd kernel must not break the magic
        return None
    meta = (parent or {}).get("metadata") or {}
    cell_id = meta.get("cellId") or meta.get("cell_id")
    return str(cell_id) if cell_id else None
