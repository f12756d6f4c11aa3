"""gemini-magics: `%%gemini` cells for Google's Gemini Interactions API, with an offline default."""
__version__ = "0.1.0"
