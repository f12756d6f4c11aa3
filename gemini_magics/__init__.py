"""gemini-magics: `%%gemini` cells for Google's Gemini Interactions API, with an offline default.

`%load_ext gemini_magics` must stay fast, so loading registers the magics and nothing else:
google.genai (about a second to import) and the local server start on the first request.
"""
from .cell_log import CellLog

__version__ = "0.1.0"


def map(template, rows, **options):  # noqa: A001 - the name the issue asks for
    """The template once per row of `rows` (a DataFrame, Series, list/tuple or dict), as
    `%%gemini --over` does: a DataFrame with a `gemini` column, or a list/dict of results."""
    # deferred: rows loads the runner (pydantic), pandas when given a DataFrame
    from .rows import map_rows

    return map_rows(template, rows, **options)


def __getattr__(name):
    """`gemini_magics.cache`: the --over row cache (len(), .path, .clear()), made on first use
    so that loading the extension opens no database."""
    if name == "cache":
        # deferred: rows (the runner, pydantic); it holds the cache of the magics' setting
        from .rows import row_cache

        return row_cache()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython):
    """Register `%%gemini` / `%gemini` (called by `%load_ext gemini_magics`)."""
    # deferred: IPython and traitlets: `python -m gemini_magics serve` needs neither
    from .magics import GeminiMagics

    ipython.register_magics(GeminiMagics)
    # What each cell runs and shows, from now on (--context, %gemini fix): the session's.
    session = ipython.magics_manager.registry["GeminiMagics"].session
    if getattr(session, "cell_log", None) is None:
        session.cell_log = CellLog(ipython).attach()


def unload_ipython_extension(ipython):
    """Remove the magics again (`%unload_ext gemini_magics`) and stop logging cells."""
    manager = ipython.magics_manager
    magics = manager.registry.get("GeminiMagics")
    log = getattr(getattr(magics, "session", None), "cell_log", None)
    if log is not None:
        log.detach()
        magics.session.cell_log = None
    for kind in ("line", "cell"):
        manager.magics[kind].pop("gemini", None)
    manager.registry.pop("GeminiMagics", None)
