"""Rung 0, the playground: `ladder try` (terminal) and `ladder play` (a local web page) over one
core (core.py), with its session log (log.py), numbers (numbers.py) and hand-off to a YAML
variant (variant.py)."""
