"""`python -m gemini_magics serve ...`, the same as the `gemini-magics` console script."""
import sys

from .cli import main

sys.exit(main())
