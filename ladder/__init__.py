"""ladder: take an LLM research idea up a ladder of methods, cheapest first.

Importing ladder is cheap on purpose: torch, transformers and the API SDKs are imported inside
the functions that need them, so `ladder --help` and `import ladder` stay fast.
"""

__version__ = "0.1.0"
