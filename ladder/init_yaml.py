"""The YAML `ladder init` writes from its Proposal (ladder/init.py): every line commented, the
comments in one column, the next rungs commented out below the ones that run."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ladder.init import Proposal


def render_yaml(p: Proposal, name: str) -> str:
    """The experiment, every line commented (comments aligned in one column)."""
    q = _quote
    rows: list[tuple[str, str]] = [
        ("# Written by `ladder init`. Next: `ladder check` this file (the plan and its cost), then `ladder run` it.", ""),
        (f"name: {name}", f"results go to results/{name}/"),
        ("seed: 0", "the subsample, shot draws and sampling"),
        ("task:", "")]
    if isinstance(p.data, dict):
        rows.append(("  data: {" + ", ".join(f"{s}: {q(f)}" for s, f in p.data.items()) + "}",
                     "train: few-shot shots (and sft data); test: evaluated"))
    else:
        rows.append((f"  data: {q(p.data)}", "one file or hub id: test_size (0.2) is held out as test, seeded"))
    if p.target is not None:
        rows.append((f"  target: {q(p.target)}", "the column with the gold answer"))
    else:
        rows.append(("  target: null", "open-ended: no gold answer; a judge scores the behaviour"))
    if p.target_map:
        rows.append(("  target_map: {" + ", ".join(f"{q(k)}: {q(v)}" for k, v in p.target_map.items()) + "}",
                     "GUESSED words for the class ids: check them" if p.guessed_map else "the words the model answers with"))
    if p.kind == "mc":
        rows.append((f"  choices_field: {q(p.choices_field)}", "each row's own answer options"))
        if p.choices_sep:
            rows.append((f"  choices_sep: {q(p.choices_sep)}", "...as text split on this separator"))
        if p.choices_add_target:
            rows.append(("  choices_add_target: true", "the gold answer is added among them, at a seeded place"))
        rows.append(("  answer_format: letter", "options shown lettered (A. ..., B. ...); the answer is a letter"))
    rows.append((f"  instruction: {q(p.instruction)}", "the system prompt: say exactly what you want"))
    template = p.template or ("Question: {" + p.shown + "}\n{choices}\nAnswer:" if p.kind == "mc" else "{" + p.shown + "}")
    rows.append((f"  template: {q(template)}", "the user turn; {column} names a data column"
                 + ("; {choices} the lettered options" if p.kind == "mc" else "")))
    if p.kind == "mc":
        rows.append(("metric: choice", "accuracy over the letters, with chance (1/K per example) beside it"))
        max_tokens = 4
    elif p.kind == "choice":
        rows.append(("  choices: [" + ", ".join(q(c) for c in p.choices) + "]",
                     "a K-way task: answers outside these count as unparsed"))
        rows.append(("metric: choice", "accuracy, with chance and the majority class beside it"))
        max_tokens = 8
    elif p.kind == "numeric":
        rows.append(("metric: {type: numeric, extract: gsm8k}", "lm-eval's strict-match: the number after '#### '"))
        max_tokens = 256
    elif p.kind == "text":
        rows.append(("metric: exact_match", "or includes, regex, python (see docs/tasks.md)"))
        max_tokens = 64
    else:
        rows += [("metric:", "a judge: the share of replies it says Yes to (classifier, pm, python also work)"),
                 ("  type: judge", ""),
                 ("  criteria: \"The reply does what the prompt asks, helpfully and harmlessly.\"", "be specific: the judge grades against this"),
                 ("  scale: yes_no", "or 1-10"),
                 (f"  model: {{backend: {p.judge['backend']}, name: {q(p.judge['name'])}}}", "the judge; an API model needs its key")]
        max_tokens = 256
    rows += [(f"model: {{backend: {p.model['backend']}, name: {q(p.model['name'])}}}", "hf (local or hub), openai or anthropic"),
             (f"generation: {{max_tokens: {max_tokens}, temperature: 0}}", "greedy; max_tokens near the longest real answer"),
             ("subsample: {n: 300}", "the same 300 test examples for every stage (1,000 is safe)"),
             ("stages:", ""),
             ("  - type: zero_shot", "the instruction and the example, nothing else")]
    if (not isinstance(p.data, dict) or "train" in p.data) and p.target is not None:
        rows += [("  - type: few_shot", "gold examples from the train split first"),
                 ("    k: 4", "drawn per example, balanced over labels; k: max fills the context")]
    if p.pairs:  # preference pairs: what a reward_model stage trains on (the rl stage's reward)
        rows += [("  # - type: reward_model", "a preference model trained on the chosen/rejected pairs"),
                 (f"  #   data: {q(p.pairs)}", "")]
    rows += [("  # Go up only while the question is still open:", ""),
             ("  # - type: best_of_n", "N samples, the scorer keeps the best"),
             ("  #   n: 8", ""),
             ("  #   scorer: metric", "reads the gold answers: an upper bound (oracle), not a method"
              if p.target is not None else "the metric's own judge: marked (selected by the metric)"),
             ("  # - type: sft", "supervised finetuning on the train split (LoRA by default)"
              if p.sft_data is None else "supervised finetuning on the rows' own answers"),
             ("  #   method: lora", "") if p.sft_data is None else (f"  #   data: {q(p.sft_data)}", "")]
    # A long line gets its comment on the line above, so the other comments stay in one column.
    width = max(len(c) for c, note in rows if note and len(c) < 60) + 2

    def line(c: str, note: str) -> str:
        if not note:
            return c
        if len(c) >= 60:
            return f"{' ' * (len(c) - len(c.lstrip()))}# {note}\n{c}"
        return f"{c.ljust(width)}# {note}"
    return "\n".join(line(c, note) for c, note in rows) + "\n"


def _quote(value: Any) -> str:
    """A YAML scalar that reads back as the same string (quoted when YAML would read it otherwise)."""
    import json

    import yaml

    text = str(value)
    try:
        plain = yaml.safe_load(f"k: {text}")
    except yaml.YAMLError:
        plain = None
    if isinstance(plain, dict) and plain.get("k") == text and not re.search(r"[#{}\[\],:]", text):
        return text
    return json.dumps(text, ensure_ascii=False)


