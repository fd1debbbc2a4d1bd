"""A Task: data, prompt and answers — one object that serves every rung.

Evaluation, few-shot shots and (later) SFT data and RL prompts all come from the same Task, so
the prompt a model is trained on is exactly the prompt it is evaluated on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

from ladder.config import TaskConfig, target_key
from ladder.errors import DataError
from ladder.templates import LETTERS, fields, is_jinja, render
from ladder.tasks.reading import FORMATS, DataReader  # noqa: F401 (FORMATS: re-exported, init.py reads it)
from ladder.types import Example, Message


class TaskLike(Protocol):
    """What a custom task ('module:function' in task.custom) must return."""

    choices: tuple[str, ...] | None

    def examples(self, split: str) -> Sequence[Example]: ...

    def render(self, ex: Example, shots: Sequence[Example] = ()) -> list[Message]: ...


class Task:
    def __init__(self, config: TaskConfig, base_dir: Path, seed: int = 0, where: str = "<config>",
                 rows: dict[str, list[dict[str, Any]]] | None = None):
        """`rows`: {split: rows} already in hand (what a `task.custom` factory may return) instead
        of reading task.data."""
        self.config = config
        self.base_dir = base_dir
        self.seed = seed
        self.where = where
        # Task-level choices; with answer_format: letter the answers (and so the choices) are letters.
        self.choice_texts = tuple(config.choices) if config.choices else None
        self.choices = self.choice_texts
        if self.choice_texts and config.answer_format == "letter":
            self.choices = tuple(LETTERS[:len(self.choice_texts)])
        self._rows = rows
        self._splits: dict[str, list[Example]] | None = None
        self.open_ended = config.target is None
        """No gold answers: `task.target: null`, or left out and the data has no `target` column."""

    # -- data -----------------------------------------------------------------------------------

    def examples(self, split: str) -> list[Example]:
        splits = self._load()
        name = {"train": self.config.train_split, "test": self.config.test_split}.get(split, split)
        if name not in splits:
            raise DataError(f"the data has no '{name}' split (it has: {', '.join(splits)})",
                            where=self.where, field=f"task.{split}_split",
                            fix="name an existing split, or give task.data as {train: file, test: file}")
        return splits[name]

    def _load(self) -> dict[str, list[Example]]:
        if self._splits is None:
            rows = self._read() if self._rows is None else self._rows
            if self.config.test_split not in rows:
                rows = self._split(rows)
            self._splits = {name: self._to_examples(name, r) for name, r in rows.items()}
        return self._splits

    def _read(self) -> dict[str, list[dict[str, Any]]]:
        return DataReader(self.config, self.base_dir, self.where, self.check_target).read()

    def _split(self, rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """One split only: hold out test_size of it as the test split, seeded."""
        import random

        if len(rows) != 1:
            raise DataError(f"the data has no '{self.config.test_split}' split (it has: "
                            f"{', '.join(rows)})", where=self.where, field="task.test_split",
                            fix="name the split to evaluate")
        (only,) = rows.values()
        order = list(range(len(only)))
        random.Random(self.seed).shuffle(order)
        n_test = max(1, round(len(only) * self.config.test_size)) if len(only) > 1 else 0
        test, train = sorted(order[:n_test]), sorted(order[n_test:])
        return {self.config.train_split: [only[i] for i in train],
                self.config.test_split: [only[i] for i in test]}

    def _to_examples(self, split: str, rows: list[dict[str, Any]]) -> list[Example]:
        cfg = self.config
        if not rows:
            raise DataError(f"the '{split}' split is empty", where=self.where, field="task.data",
                            fix="point task.data at a file with at least one row")
        columns = set(rows[0])
        if cfg.target is not None and "target" not in cfg.model_fields_set and cfg.target not in columns \
                and not self._has_choices:
            self.open_ended = True  # no target named and none in the data: judged, not compared
        wanted = [(key, f) for key, f in self._template_fields() if f != "choices" or not self._has_choices]
        if not self.open_ended:
            wanted.append(("task.target", cfg.target))
        if cfg.id_field:
            wanted.append(("task.id_field", cfg.id_field))
        if cfg.choices_field:
            wanted.append(("task.choices_field", cfg.choices_field))
        for key, column in wanted:
            if column not in columns:
                raise DataError(f"names column '{column}', which is not in the '{split}' data "
                                f"({self._source(split)}columns: {', '.join(sorted(columns))})",
                                where=self.where, field=key, fix="use one of those column names")
        file = cfg.data.get(split) if isinstance(cfg.data, dict) else cfg.data
        out = []
        for i, row in enumerate(rows):
            # Named with its file here: make_example also serves gold shots, which have no file.
            if not self.open_ended:
                self.check_target(row.get(cfg.target), f"row {i + 1} of the '{split}' data"
                                                   + (f" ({file})" if file else ""))
            ex_id = str(row[cfg.id_field]) if cfg.id_field else f"{split}-{i}"
            # 1-based, like the line numbers of a .jsonl file (and sft's data errors).
            out.append(self.make_example(row, ex_id, field=f"row {i + 1} of the '{split}' data"))
        if is_jinja(cfg.template) or is_jinja(cfg.instruction):
            # A Jinja template can fail on a row in ways its field list does not show ({{ a.b }},
            # {{ n + 1 }} on text): render every row now, before anything is written. Microseconds each.
            for i, ex in enumerate(out):
                self.render(ex, where=f"row {i + 1} of the '{split}' data")
        return out

    @property
    def _has_choices(self) -> bool:
        return bool(self.config.choices or self.config.choices_field)

    def _template_fields(self) -> list[tuple[str, str]]:
        """(config key, field) for every row field the template and a Jinja instruction name."""
        cfg = self.config
        out = [("task.template", f) for f in fields(cfg.template)]
        if is_jinja(cfg.instruction):
            out += [("task.instruction", f) for f in fields(cfg.instruction)]
        return out

    def _source(self, split: str) -> str:
        """'file; ' for messages about a split: the file it came from, when there is one."""
        data = self.config.data
        file = data.get(split) if isinstance(data, dict) else data
        return f"{file}; " if file else ""

    def make_example(self, row: dict[str, Any], ex_id: str, field: str = "task") -> Example:
        """An Example from a data row (also used for gold shots written in the YAML)."""
        cfg = self.config
        for key, column in self._template_fields():
            if column == "choices" and self._has_choices:
                continue  # filled from the example's choices, not from a column
            # A row without the column loads as None, which the prompt would show as "None".
            if row.get(column) is None:
                raise DataError(f"{field} has no value in column '{column}', which the template uses",
                                where=self.where, field=key,
                                fix="fill in or drop rows without it, or leave it out of the template")
        if self.open_ended:
            return Example(id=ex_id, fields=dict(row), target=None)
        raw = row.get(cfg.target)
        if raw is None:
            raise DataError(f"{field} has no value in target column '{cfg.target}'", where=self.where,
                            field="task.target", fix="fill in or drop rows without a target")
        self.check_target(raw, field)
        target = str(raw)
        if cfg.target_map is not None:
            key = target_key(raw)
            if key not in cfg.target_map and key.lower() in ("true", "false"):
                key = key.lower()  # "True" in a CSV, `true` in the YAML
            if key not in cfg.target_map:
                raise DataError(f"target value {target!r} ({field}) is not a key of target_map",
                                where=self.where, field="task.target_map",
                                fix=f"add it to target_map (keys now: {', '.join(cfg.target_map)})")
            target = cfg.target_map[key]
        if self.choice_texts and target not in self.choice_texts:
            raise DataError(f"target {target!r} ({field}) is not one of the choices "
                            f"({', '.join(self.choice_texts)})", where=self.where, field="task.choices",
                            fix="add it to task.choices, or map raw labels with task.target_map")
        values = {k: v for k, v in row.items() if k != cfg.target}
        texts = self.choice_texts
        if cfg.choices_field:
            texts = self._row_choices(row, target, ex_id, field)
            values["choices"] = list(texts)  # what {choices} / {{ choices }} show
        if cfg.answer_format == "letter" and texts:
            return Example(id=ex_id, fields=values, target=LETTERS[texts.index(target)],
                           choices=tuple(LETTERS[:len(texts)]))
        return Example(id=ex_id, fields=values, target=target, choices=texts)

    def _row_choices(self, row: dict[str, Any], target: str, ex_id: str, field: str) -> tuple[str, ...]:
        """One example's choices from task.choices_field: split, trimmed, duplicates dropped, the
        target added at a seeded place when choices_add_target asks for it."""
        cfg = self.config
        column = cfg.choices_field
        raw = row.get(column)
        if isinstance(raw, str):
            if cfg.choices_sep is None:
                raise DataError(f"{field} holds text in choices column '{column}' ({raw[:60]!r}), not a "
                                f"list", where=self.where, field="task.choices_sep",
                                fix="set task.choices_sep to the separator between its choices, e.g. ';'")
            items = raw.split(cfg.choices_sep)
        elif isinstance(raw, (list, tuple)):
            items = list(raw)
        elif raw is None:
            items = []
        else:
            raise DataError(f"{field} holds a {type(raw).__name__} in choices column '{column}', not a "
                            f"list or text", where=self.where, field="task.choices_field",
                            fix="give each row a list of choices, or text split on task.choices_sep")
        # A choice listed twice is one option: keep the first (K is what the chance level reads).
        choices = list(dict.fromkeys(c for c in (str(x).strip() for x in items if x is not None) if c))
        if not choices:  # even with choices_add_target: a row of one option is a data mistake
            raise DataError(f"{field} has an empty choices list in column '{column}'", where=self.where,
                            field="task.choices_field",
                            fix="give every row its answer options, or drop rows without any")
        if target not in choices:
            if not cfg.choices_add_target:
                shown = "; ".join(choices)
                raise DataError(f"target {target!r} ({field}) is not one of its choices ({shown[:200]})",
                                where=self.where, field="task.choices_field",
                                fix="set task.choices_add_target: true to add each target to its row's "
                                    "choices, or fix that row")
            import random

            # Seeded by experiment seed and example id: the same place on every run and stage.
            choices.insert(random.Random(f"{self.seed}:{ex_id}").randint(0, len(choices)), target)
        if len(choices) < 2:
            raise DataError(f"{field} has only one choice ({choices[0]!r}) in column '{column}'",
                            where=self.where, field="task.choices_field",
                            fix="give every row at least one wrong answer besides the target, or drop it")
        if cfg.answer_format == "letter" and len(choices) > len(LETTERS):
            raise DataError(f"{field} has {len(choices)} choices, more than the 26 letters A-Z that "
                            f"answer_format: letter names them by", where=self.where,
                            field="task.answer_format",
                            fix="use answer_format: text, or give that row at most 26 choices")
        return tuple(choices)

    def check_target(self, raw: Any, field: str) -> None:
        """A DataError for a target that is not one answer: a list or mapping (scored as its Python
        text, "['a', 'b']", it matches nothing), or a boolean without a target_map saying which
        answer true and false stand for."""
        cfg = self.config
        if isinstance(raw, (list, tuple, dict)):
            kind = "a list" if isinstance(raw, (list, tuple)) else "a mapping"
            shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
            raise DataError(f"{field} has {kind} as its target ({shown}) in column '{cfg.target}'; a "
                            f"target must be one answer (text or a number)", where=self.where,
                            field="task.target",
                            fix="put the one gold answer in the target column; to accept several answers, "
                                "keep them in another column and score with a `python` metric, which "
                                "sees every other column in example.fields")
        if isinstance(raw, bool) and cfg.target_map is None:
            raise DataError(f"{field} has the boolean {str(raw).lower()} as its target in column "
                            f"'{cfg.target}', which would be scored as the text '{raw}'", where=self.where,
                            field="task.target_map",
                            fix="say which answer each stands for, e.g. target_map: {true: positive, false: negative}")

    # -- prompts --------------------------------------------------------------------------------

    def user_text(self, ex: Example, where: str | None = None) -> str:
        return self._fill("task.template", self.config.template, ex, where)

    def _fill(self, key: str, template: str, ex: Example, where: str | None) -> str:
        texts = ex.fields.get("choices") if self.config.choices_field else self.choice_texts
        try:
            return render(template, ex.fields, texts)
        except KeyError as exc:
            raise DataError(f"the template names field {exc}, which {where or f'example {ex.id}'} lacks",
                            where=self.where, field=key, fix="use column names present in every row") from None
        except ValueError as exc:
            raise DataError(f"the template fails on {where or f'example {ex.id}'} ({exc})", where=self.where,
                            field=key, fix="fix the template for rows like that one") from None

    def render(self, ex: Example, shots: Sequence[Example] = (), where: str | None = None) -> list[Message]:
        instruction = self.config.instruction
        if is_jinja(instruction):
            instruction = self._fill("task.instruction", instruction, ex, where)
        messages = [Message("system", instruction)] if instruction else []
        for shot in shots:
            messages += [Message("user", self.user_text(shot)), Message("assistant", shot.target)]
        messages.append(Message("user", self.user_text(ex, where)))
        return messages


def load_task(config: TaskConfig, base_dir: Path, seed: int, where: str) -> TaskLike:
    if config.custom:
        from ladder.registry import import_object

        factory = import_object(config.custom, field="task.custom")
        args, kwargs = _factory_args(factory, config, base_dir, seed)
        made = factory(*args, **kwargs)
        # Rows (a list, or {split: list}): the YAML's template, target and choices keys describe them,
        # so a template may name fields the factory derived.
        if isinstance(made, list):
            return Task(config, base_dir, seed, where, rows={"train": made})
        if isinstance(made, dict) and all(isinstance(v, list) for v in made.values()):
            return Task(config, base_dir, seed, where, rows=made)
        return made
    return Task(config, base_dir, seed, where)


def _factory_args(factory: Any, config: TaskConfig, base_dir: Path,
                  seed: int) -> tuple[list[Any], dict[str, Any]]:
    """The arguments a task.custom factory takes: `(config, base_dir, seed)` or a prefix of it
    (older factories take only the config), by position or by those names; a factory with no
    parameters gets none."""
    import inspect

    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the original one-argument call
        return [config], {}
    given = {"config": config, "base_dir": base_dir, "seed": seed}
    # Parameters not named like ours take, in order, the values no parameter is named for.
    unnamed = [v for k, v in given.items() if k not in {p.name for p in params}]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    positional = True  # until a parameter that neither a name nor its place fills
    for p in params:
        if p.kind is p.VAR_POSITIONAL and positional:
            args += unnamed
            unnamed = []
        elif p.name in given and (p.kind is p.KEYWORD_ONLY or
                                  p.kind is p.POSITIONAL_OR_KEYWORD and not positional):
            kwargs[p.name] = given[p.name]
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional:
            if p.name in given:
                args.append(given[p.name])
            elif p.default is p.empty and unnamed:
                args.append(unnamed.pop(0))
            else:
                positional = False
    return args, kwargs
