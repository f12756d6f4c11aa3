"""gemini-magics: `%%gemini` cells for Google's Gemini Interactions API, with an offline default.

`%load_ext gemini_magics` must stay fast, so loading registers the magics and nothing else:
google.genai (about a second to import) and the local server start on the first request.
"""
__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """Register `%%gemini` / `%gemini` (called by `%load_ext gemini_magics`)."""
    # deferred: IPython and traitlets: `python -m gemini_magics serve` needs neither
    from .magics import GeminiMagics

    ipython.register_magics(GeminiMagics)


def unload_ipython_extension(ipython):
    """Remove the magics again (`%unload_ext gemini_magics`)."""
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("gemini", None)
    manager.registry.pop("GeminiMagics", None)
