"""`ladder init DATA`: a first experiment YAML from a data file, a folder or a hub id.

It reads the columns and proposes what a person would otherwise work out by hand: the target
column (few distinct values → a K-way task with `choices`; `#### 42`-style answers → `numeric`),
words for class ids (0/1 → negative/positive, said to be a guess), the column the template shows,
an instruction, and a ladder of stages (zero_shot and few_shot on, best_of_n and sft commented out
below). Every line of the YAML carries a comment; the next two commands are printed. Interactive on
a terminal (confirm or change each guess), flags otherwise; an existing file is never overwritten
without --force.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ladder.errors import ConfigError, DataError
from ladder.init_yaml import Proposal, render_yaml

MAX_CHOICES = 20
"""More distinct values than this is not a K-way task."""
TARGET_NAMES = ("label", "labels", "target", "answer", "gold", "output", "class", "category", "y",
                "sentiment", "best_answer", "completion")
"""Column names that usually hold the gold answer, most likely first."""
TEXT_NAMES = ("text", "sentence", "question", "prompt", "input", "review", "content", "document",
              "context", "query", "instruction", "problem")
"""Column names that usually hold what the model is shown."""
SPLIT_NAMES = {"train": ("train", "training"), "test": ("test", "dev", "validation", "valid", "val", "eval")}
"""File stems that name a split in a data folder (the first found is used)."""
SENTIMENT_HINTS = ("sst", "sentiment", "imdb", "review", "polarity", "yelp", "amazon")
"""Words in a data path or column name that make 0/1 read as negative/positive."""
CHOICE_SEPS = (";", "|")
"""Separators of answer options written as one text column ("Lyon;Marseille;Nice")."""
PAIR_COLUMNS = ("chosen", "rejected")
"""Columns of a preference-pair file: its prompts make an open-ended task, the pairs a reward model."""


# ---------------------------------------------------------------------------------------------
# Reading


def find_data(data: str, cwd: Path) -> tuple[str | dict[str, Path], dict[str, list[dict[str, Any]]]]:
    """(what was read: a file, a {split: file} folder mapping, or a hub id; rows per split)."""
    from ladder.tasks import FORMATS

    path = (cwd / data).expanduser() if not Path(data).is_absolute() else Path(data)
    if path.is_dir():
        files = {p.stem.lower(): p for p in sorted(path.iterdir()) if p.suffix.lower() in FORMATS}
        if not files:
            raise DataError(f"no data files in {path}", field="DATA",
                            fix=f"point at a folder with train/test files ({', '.join(FORMATS)}) or at one file")
        splits = {}
        for split, stems in SPLIT_NAMES.items():
            stem = next((s for s in stems if s in files), None)
            if stem:
                splits[split] = files[stem]
        if "test" not in splits:  # no recognisable split names: read the first file, split it
            splits = {"all": next(iter(files.values()))}
        return (splits if "all" not in splits else splits["all"]), {s: _read(p) for s, p in splits.items()}
    if path.exists():
        return path, {"all": _read(path)}
    if data.startswith((".", "/", "~")) or Path(data).suffix:
        raise DataError(f"data file '{path}' does not exist", field="DATA", fix="check the path")
    return data, _read_hub(data)


def _read(path: Path) -> list[dict[str, Any]]:
    import datasets

    from ladder.tasks import FORMATS

    builder = FORMATS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"unknown data file type '{path.suffix}'", where=str(path), field="DATA",
                        fix=f"use one of {', '.join(FORMATS)}")
    datasets.disable_progress_bars()
    options = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **options).to_list()
    except Exception as exc:  # datasets raises many types; all mean "cannot read this file"
        raise DataError(f"cannot read '{path}' ({type(exc).__name__})", field="DATA",
                        fix="check it is valid JSONL/CSV/TSV/Parquet in UTF-8") from None


def _read_hub(data_id: str) -> dict[str, list[dict[str, Any]]]:
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(data_id)
    except Exception as exc:
        raise DataError(f"cannot load the hub data set '{data_id}' ({type(exc).__name__})", field="DATA",
                        fix="check the id, or that the Hugging Face Hub is reachable (HF_HUB_OFFLINE unset)") from None
    return {name: split.to_list() for name, split in ds.items()}


# ---------------------------------------------------------------------------------------------
# Guessing


def propose(data: str, cwd: Path, out: Path, *, target: str | None = None, field_: str | None = None,
            instruction: str | None = None, model: str | None = None, labels: str | None = None,
            judge: str | None = None) -> Proposal:
    """Read DATA and guess the task; flags given override the guesses."""
    source, rows = find_data(data, cwd)
    first = next(iter(rows.values()))
    if not first:
        raise DataError(f"'{data}' has no rows", field="DATA", fix="point at data with at least one row")
    columns = list(first[0])
    p = Proposal(data=_as_yaml_data(source, out.parent), columns=columns, rows={s: len(r) for s, r in rows.items()})
    every = [r for split in rows.values() for r in split]
    if target is not None and target not in columns:
        raise ConfigError(f"--target names column '{target}', which the data lacks", field="--target",
                          fix=f"use one of: {', '.join(columns)}")
    chat = _messages_column(columns, every) if target is None else None
    if chat is not None:  # the user turn is read out of each row's messages; the answers are sft data
        _chat_rows(p, chat, every)
        target = field_ = chat
        p.target = None
    pairs = target is None and all(c in [k.lower() for k in columns] for c in PAIR_COLUMNS)
    if pairs:  # chosen/rejected are two replies to compare, not a gold answer
        p.pairs = p.data if isinstance(p.data, str) else next(iter(p.data.values()))
        p.notes.append("'chosen' and 'rejected' are preference pairs, not gold answers: the prompts make an "
                       "open-ended task; a reward_model stage can train on the pairs (commented in the YAML)")
    if chat is None:
        p.target = target if target is not None or pairs else _guess_target(columns, every)
    if p.target is not None:
        _target_kind(p, every, data, labels)
        _options(p, columns, every)
    text_columns = [c for c in columns if c != p.target and c != p.choices_field
                    and not (pairs and c.lower() in PAIR_COLUMNS)] if chat is None else [chat]
    if field_ is not None and field_ not in text_columns:
        raise ConfigError(f"--field names column '{field_}', which the data lacks (or is the target)",
                          field="--field", fix=f"use one of: {', '.join(text_columns)}")
    p.shown = field_ or _guess_field(text_columns, every)
    p.instruction = instruction if instruction is not None else p.instruction or _instruction(p)
    if model:
        p.model = parse_model(model)
    # An open-ended task is scored by a judge: the one named, else the model itself when it is an
    # API model, else a small API judge (ladder-tiny cannot answer Yes/No reliably).
    if judge:
        p.judge = parse_model(judge)
    elif p.model["backend"] != "hf":
        p.judge = dict(p.model)
    return p


def _guess_target(columns: list[str], rows: list[dict[str, Any]]) -> str | None:
    named = [c for name in TARGET_NAMES for c in columns if c.lower() == name]
    # A label repeats: few distinct values, each on several rows (20 prompts are not a 20-way task).
    few = [c for c in columns if 2 <= len(_distinct(rows, c)) <= min(MAX_CHOICES, len(rows) / 3)]
    numeric = [c for c in columns if _numeric_answers(rows, c)]
    for pick in ([c for c in named if c in few or c in numeric], few, numeric, named):
        if pick:
            return pick[0]
    return None


def _options(p: Proposal, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """A column holding each row's own answer options (a list, or text like "Lyon;Marseille;Nice")
    beside a text target makes a lettered multiple-choice task (`choices_field`)."""
    if p.kind not in ("text", "choice") or p.target_map:
        return
    for c in columns:
        if c == p.target:
            continue
        values = [r.get(c) for r in rows]
        if all(isinstance(v, list) and v for v in values):
            sep, split = None, [[str(x).strip() for x in v] for v in values]
        else:
            sep = next((s for s in CHOICE_SEPS if all(isinstance(v, str) and s in v for v in values)), None)
            if sep is None:
                continue
            split = [[x.strip() for x in v.split(sep)] for v in values]
        inside = sum(_text(r.get(p.target)) in options for r, options in zip(rows, split))
        p.kind, p.choices_field, p.choices_sep, p.choices, p.choices_add_target = "mc", c, sep, [], inside < len(rows)
        if 0 < inside < len(rows):  # some rows list the answer, some do not: adding it where missing is the one fix
            p.notes.append(f"the gold answer is among the '{c}' options on {inside} of {len(rows)} rows; it is added "
                           f"to the others (choices_add_target)")
        return


def _messages_column(columns: list[str], rows: list[dict[str, Any]]) -> str | None:
    """The column of chat messages ([{role, content}, ...] holding a user turn) on every row: best_of_n's
    sft.jsonl export (`prompt`) or OpenAI's fine-tuning files (`messages`)."""
    def chat(v: Any) -> bool:
        return isinstance(v, list) and any(isinstance(m, dict) and m.get("role") == "user" for m in v) \
            and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in v)
    return next((c for c in columns if all(chat(r.get(c)) for r in rows[:500])), None)


def _chat_rows(p: Proposal, column: str, rows: list[dict[str, Any]]) -> None:
    """An open-ended task on chat rows: the last user message is the user turn (a Jinja template),
    a system message every row shares is the instruction, and the file itself is sft data."""
    p.template = f"{{{{ ({column} | selectattr('role', 'equalto', 'user') | list)[-1].content }}}}"
    systems = {m["content"] for r in rows for m in r[column][:1] if m["role"] == "system"}
    if len(systems) == 1 and all(r[column][0]["role"] == "system" for r in rows):
        p.instruction = systems.pop()
    p.sft_data = p.data if isinstance(p.data, str) else next(iter(p.data.values()))
    p.notes.append(f"'{column}' holds chat messages: the user turn is each row's last user message, and the "
                   f"rows are sft data as they are (a commented sft stage trains on them)")


def _distinct(rows: list[dict[str, Any]], column: str) -> set[str]:
    values = set()
    for r in rows:
        v = r.get(column)
        if isinstance(v, (list, dict)):
            return set(range(MAX_CHOICES + 1))  # not one answer per row
        values.add(_text(v))
        if len(values) > MAX_CHOICES:
            break
    return values


def _numeric_answers(rows: list[dict[str, Any]], column: str) -> bool:
    """Answers that end in a number: GSM8K's `#### 42`, or plain numbers with many values."""
    sample = [r.get(column) for r in rows[:200]]
    if all(isinstance(v, str) and re.search(r"####\s*-?[\d.,]+\s*$", v) for v in sample):
        return True
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sample) and \
        len(_distinct(rows, column)) > MAX_CHOICES


def _target_kind(p: Proposal, rows: list[dict[str, Any]], data: str, labels: str | None) -> None:
    assert p.target is not None
    values = _distinct(rows, p.target)
    if _numeric_answers(rows, p.target):
        p.kind = "numeric"
        return
    if len(values) > MAX_CHOICES:
        p.kind = "text"
        return
    p.kind = "choice"
    counts = Counter(_text(r.get(p.target)) for r in rows)
    ordered = sorted(counts, key=lambda v: (_as_int(v) is None, _as_int(v) or 0, v))
    if labels:
        p.target_map = _parse_labels(labels, ordered)
    elif all(_as_int(v) is not None for v in ordered):  # class ids: the model needs words to answer
        hint = (data + " " + p.target).lower()
        if ordered == ["0", "1"] and any(h in hint for h in SENTIMENT_HINTS):
            p.target_map = {"0": "negative", "1": "positive"}
        elif ordered == ["0", "1"]:
            p.target_map = {"0": "no", "1": "yes"}
        else:
            p.target_map = {v: f"class_{v}" for v in ordered}
        p.guessed_map = True
        p.notes.append(f"guessed words for the class ids of '{p.target}': "
                       + ", ".join(f"{k} → {v}" for k, v in p.target_map.items())
                       + " — check them (or pass --labels 0=...,1=...)")
    p.choices = [p.target_map[v] for v in ordered] if p.target_map else ordered


def _parse_labels(labels: str, values: list[str]) -> dict[str, str]:
    mapping = {}
    for part in labels.split(","):
        key, sep, word = part.partition("=")
        if not sep or not word.strip():
            raise ConfigError(f"--labels part '{part}' is not VALUE=WORD", field="--labels",
                              fix="write e.g. --labels 0=negative,1=positive")
        mapping[key.strip()] = word.strip()
    missing = [v for v in values if v not in mapping]
    if missing:
        raise ConfigError(f"--labels has no word for the value(s) {', '.join(missing)}", field="--labels",
                          fix=f"give every value a word: {','.join(f'{v}=...' for v in values)}")
    return mapping


def _guess_field(columns: list[str], rows: list[dict[str, Any]]) -> str:
    if not columns:
        raise DataError("the data has only its target column: nothing to show the model", field="DATA",
                        fix="add a column with the input text")
    for name in TEXT_NAMES:
        for c in columns:
            if c.lower() == name:
                return c
    # Otherwise the column with the longest text on average: what a model would be shown.
    def length(c: str) -> float:
        return sum(len(_text(r.get(c))) for r in rows[:500]) / max(1, min(len(rows), 500))
    return max(columns, key=length)


def _instruction(p: Proposal) -> str:
    if p.kind == "mc":
        return "Answer the multiple-choice question with the letter of the correct option only."
    if p.kind == "choice":
        words = ", ".join(p.choices[:-1]) + f" or {p.choices[-1]}" if len(p.choices) > 1 else p.choices[0]
        return f"Classify the {p.shown}. Answer with exactly one word: {words}."
    if p.kind == "numeric":
        return "Solve the problem step by step. End with a line '#### <number>' holding only the final answer."
    if p.kind == "text":
        return f"Answer the {p.shown}."
    return "Reply to the message helpfully and harmlessly."


def parse_model(spec: str) -> dict[str, str]:
    """`openai:gpt-4o-mini`, `anthropic:claude-...`, `hf:NAME` or a bare NAME (a local or hub model)."""
    backend, sep, name = spec.partition(":")
    if sep and backend in ("hf", "openai", "anthropic") and name:
        return {"backend": backend, "name": name}
    return {"backend": "hf", "name": spec}


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "" if v is None else str(v)


def _as_int(v: str) -> int | None:
    return int(v) if re.fullmatch(r"-?\d+", v) else None


def _as_yaml_data(source: str | Path | dict[str, Path], folder: Path) -> str | dict[str, str]:
    def rel(p: Path) -> str:
        # Relative to the YAML when both are in one project (at most two folders up: configs/ beside
        # data/); else absolute — sharing only /tmp or /home is not a project, and ../../../x breaks
        # as soon as either moves.
        p, base = p.resolve(), folder.resolve()
        try:
            up = os.path.relpath(p, base)
        except ValueError:  # another drive
            return str(p)
        return up if Path(up).parts[:3] != ("..",) * 3 else str(p)
    if isinstance(source, dict):
        return {split: rel(p) for split, p in source.items()}
    return rel(source) if isinstance(source, Path) else source


# ---------------------------------------------------------------------------------------------
# Writing: ladder/init_yaml.py


def run_init(data: str, out: Path, *, cwd: Path, force: bool = False, ask: Callable[[str, str], str] | None = None,
             say: Callable[[str], None] = print, **flags: Any) -> Proposal:
    """Propose, let `ask(question, default)` change the guesses (interactive), write `out`."""
    if out.exists() and not force:
        raise ConfigError(f"'{out}' already exists", field="--out",
                          fix="pass --force to overwrite it, or --out another file")
    p = propose(data, cwd, out, **flags)
    if ask is not None:
        p = _confirm(p, data, cwd, out, ask, flags)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", out.stem).strip("._") or "experiment"
    text = render_yaml(p, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    from ladder.store import atomic_write

    atomic_write(out, text)
    for note in p.notes:
        say(f"note: {note}")
    split_rows = ", ".join(f"{s} {n:,}" for s, n in p.rows.items())
    if p.kind == "open" and p.sft_data is None:
        say(f"note: no column looks like a gold answer ({', '.join(p.columns)}): an open-ended task scored by a "
            f"judge ({p.judge['backend']} {p.judge['name']}); --target COLUMN names one, --judge SPEC another judge")
    what = ("no target (open-ended, judged" if p.target is None else
            f"target '{p.target}' (multiple choice, each row's options from '{p.choices_field}', answered by letter"
            if p.kind == "mc" else f"target '{p.target}' ({p.kind}")
    say(f"wrote {out}: {what}{', ' + str(len(p.choices)) + ' choices' if p.choices else ''}), "
        f"template '{p.template or '{' + p.shown + '}'}', model {p.model['name']} ({split_rows} rows)")
    say(f"next:  ladder check {out}\n       ladder run {out}")
    return p


def _confirm(p: Proposal, data: str, cwd: Path, out: Path, ask: Callable[[str, str], str],
             flags: dict[str, Any]) -> Proposal:
    """Ask about each guess on a terminal; re-propose when the target changes."""
    target = ask(f"target column ({', '.join(p.columns)})", p.target or "")
    if target != (p.target or ""):
        p = propose(data, cwd, out, **{**flags, "target": target or None})
    if p.target_map:
        mapping = ask("words for the class ids (VALUE=WORD,...)", ",".join(f"{k}={v}" for k, v in p.target_map.items()))
        p = propose(data, cwd, out, **{**flags, "target": p.target, "labels": mapping})
        p.guessed_map = False
        p.notes = []
    field_ = ask(f"column the model is shown ({', '.join(c for c in p.columns if c != p.target)})", p.shown)
    if field_ != p.shown:
        p = propose(data, cwd, out, **{**flags, "target": p.target, "field_": field_})
    p.instruction = ask("instruction", p.instruction)
    return p
