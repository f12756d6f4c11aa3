"""One kernel's state, in one object: the Session.

Every `GeminiMagics` owns one (`magics.session`); `gemini_magics.map` outside a kernel uses the
process's plain one. It holds what used to be spread over module globals: the settings (read
from their owner), the conversation, the SDK clients and the servers started for it, the
cassette, the names warned about once, and the slots the background machinery fills (jobs,
batches, live answers, the panel, the usage ledger). Passing it explicitly is what lets two
sessions (or two tests) not see each other's state.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, TypeVar

from .conversation import Conversation

if TYPE_CHECKING:  # the classes of the slots the modules above fill; never imported at run time
    from .live import LiveJobs
    from .widgets import Panels

T = TypeVar("T")

__all__ = ["Session", "current"]


@dataclass(eq=False)
class Session:
    """The state of one kernel (or of `gemini_magics.map` outside one).

    `read_settings` returns the current settings (the magics' traitlets; `dict` for the plain
    session: every default), `read_namespace` the notebook's variables. The containers are
    guarded by `lock` where threads share them.
    """

    read_settings: Callable[[], Mapping[str, Any]] = dict
    # the notebook's variables, which `gemini_magics.map` fills a template from ({} outside one)
    read_namespace: Callable[[], Mapping[str, Any]] = dict
    conversation: Conversation = field(default_factory=Conversation)
    last_result: Any = None               # `%gemini last`
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # client.get_client: (base_url, key, attempts, timeout, cassette id) -> google.genai.Client
    clients: dict = field(default_factory=dict, repr=False)
    # client: engine name -> the embedded LocalServer started for it
    servers: dict = field(default_factory=dict, repr=False)
    # `%gemini record/replay`: wins over the environment's cassette until ejected
    cassette: Any = None
    # (path, mode) -> the Cassette GEMINI_MAGICS_CASSETTE names (one per file, so a client
    # rebuilt per cell keeps the replay order and never wipes what was recorded)
    env_cassettes: dict = field(default_factory=dict, repr=False)
    # what was said once: ("model", name) unknown-name warnings, the offline notice, notes
    warned: set = field(default_factory=set, repr=False)
    # jobs.py: interaction id -> BackgroundJob started here
    jobs: dict = field(default_factory=dict, repr=False)
    # batch.py: batch name -> BatchRun started here
    batches: dict = field(default_factory=dict, repr=False)
    # live.py: the answers streaming into --ui views and the panel (`%gemini stop` stops them);
    # made on first use by live.jobs_of
    live_jobs: Optional[LiveJobs] = field(default=None, repr=False)
    # widgets.py: the `%gemini ui` panel and each cell's running --ui answer; made on first use
    # by widgets.panels_of
    panels: Optional[Panels] = field(default=None, repr=False)
    # spend.py: this session's usage and cost per model (`%gemini usage`), made on first use
    ledger: Any = None
    # cell_log.py: what each cell ran and showed (--context, fix); attached by load_ipython_extension
    cell_log: Any = None

    def settings(self) -> dict:
        """The current settings as a plain dict (what args.parse and the client read)."""
        return dict(self.read_settings())

    def own(self, slot: str, make: Callable[[], T]) -> T:
        """What `slot` holds, made by `make()` on first use (under the lock, so two threads
        get the same one): the modules above own their slot's class, and session.py imports
        none of them."""
        with self.lock:
            found = getattr(self, slot)
            if found is None:
                found = make()
                setattr(self, slot, found)
            return found

    def once(self, what: Any) -> bool:
        """True the first time `what` is asked about in this session, then False: for things
        said once (an unknown model's warning, the offline notice)."""
        with self.lock:
            if what in self.warned:
                return False
            self.warned.add(what)
            return True

    # -- the cassette --------------------------------------------------------------------------
    def current_cassette(self, environ: Optional[Mapping[str, str]] = None) -> Any:
        """The cassette requests go through now: `%gemini record/replay`'s, else the one the
        environment names (CassetteError for a bad environment), else None."""
        if self.cassette is not None:
            return self.cassette
        from .replay import cassette_from_env  # deferred: replay loads httpx

        return cassette_from_env(environ, self.env_cassettes)

    def use_cassette(self, path: Any, mode: str = "auto") -> Any:
        """A fresh cassette (record starts the file again, replay from the first answer) that
        wins over the environment's; CassetteError (one sentence) if it cannot be used."""
        from .replay import Cassette  # deferred: replay loads httpx

        cassette = Cassette(path, mode)
        with self.lock:
            self.cassette = cassette
        return cassette

    def eject(self) -> Any:
        """Stop using `%gemini record/replay`'s cassette; returns it (None if there was none)."""
        with self.lock:
            cassette, self.cassette = self.cassette, None
        return cassette


# The plain session, made on first use: a process with no kernel has exactly one (process state
# by definition: it is what "no kernel" means).
_plain: list = []
_plain_lock = threading.Lock()


def current() -> Session:
    """The session a call that was given none belongs to: the one of the magics loaded in the
    running IPython (`%load_ext gemini_magics`), else the process's plain session."""
    ipython = sys.modules.get("IPython")  # not imported: then no kernel has the magics
    shell = ipython.get_ipython() if ipython is not None else None
    magics = shell.magics_manager.registry.get("GeminiMagics") if shell is not None else None
    if magics is not None:
        return magics.session
    with _plain_lock:
        if not _plain:
            _plain.append(Session())
        return _plain[0]
