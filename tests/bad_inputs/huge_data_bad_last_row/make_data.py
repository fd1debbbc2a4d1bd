"""Writes test.jsonl: 200,000 reviews, too big to commit. The very last row's label is outside
the choices: the check must read every row, not a sample, before anything runs."""

import json
from pathlib import Path

LABELS = ["positive", "negative", "neutral"]
N = 200_000

with open(Path(__file__).parent / "test.jsonl", "w", encoding="utf-8") as f:
    for i in range(N - 1):
        f.write(json.dumps({"text": f"the meal {i} was fine", "label": LABELS[i % 3]}) + "\n")
    f.write(json.dumps({"text": "the meal was fine, the wine was not", "label": "mixed"}) + "\n")
