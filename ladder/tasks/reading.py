"""Reading a task's data: local files (JSONL, CSV, TSV, Parquet, a folder of them, a {split: file}
mapping) or a hub data set, into {split: rows}. Flat local JSONL is read without `datasets`
(plain_jsonl.py); anything the reader cannot load is reported with the file, and the line when
diagnose.py finds it. The Task (tasks/__init__.py) turns the rows into examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ladder.config import TaskConfig, resolve_path
from ladder.errors import DataError
from ladder.tasks.diagnose import diagnose

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
# Suffixes of the files a data folder is read from (compressed ones too: data.jsonl.gz).
FOLDER_DATA = {*FORMATS, ".txt", ".arrow"}
# Suffixes that mean "a file was meant" (so a missing one is not looked up on the hub).
FILE_LIKE = {*FORMATS, ".txt", ".gz", ".zip", ".xz", ".bz2", ".yaml", ".yml", ".arrow"}


class DataReader:
    """Reads the data `config` names, relative paths from `base_dir`. `check_target(raw, where)`
    refuses a target of the wrong shape (the Task's own check)."""

    def __init__(self, config: TaskConfig, base_dir: Path, where: str, check_target: Callable[[Any, str], None]):
        self.config = config
        self.base_dir = base_dir
        self.where = where
        self.check_target = check_target

    def resolve(self, value: str, field: str = "task.data") -> tuple[str, str | None]:
        """(path or hub id, builder) for one data entry; relative paths from the YAML's folder."""
        path = resolve_path(value, self.base_dir)
        if path.exists():
            if path.is_dir():
                # The folder is read as a data set of its data files; with none there the reader's
                # own complaint is about mixing formats, which names neither the folder nor the fix.
                if not any(set(f.suffixes) & FOLDER_DATA for f in path.rglob("*")
                           if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)):
                    raise DataError(f"no data files in {value} (a data folder is read through its "
                                    f"{', '.join(FORMATS)} files)", where=self.where, field=field,
                                    fix="put the data files in that folder, or point the field at a data file")
                return str(path), None
            if path.stat().st_size == 0:
                raise DataError(f"data file '{path}' is empty", where=self.where, field=field,
                                fix="point task.data at a file with at least one row")
            builder = FORMATS.get(path.suffix.lower())
            if builder is None:
                raise DataError(f"unknown data file type '{path.suffix}'", where=self.where,
                                field=field, fix=f"use one of {', '.join(FORMATS)}")
            return str(path), builder
        if value.startswith((".", "/", "~")) or Path(value).suffix.lower() in FILE_LIKE:
            raise DataError(f"data file '{path}' does not exist", where=self.where, field=field,
                            fix="check the path; relative paths are read from the YAML file's folder")
        return value, None  # a hub data set id

    def read(self) -> dict[str, list[dict[str, Any]]]:
        plain = self._read_plain_jsonl()
        if plain is not None:
            return plain
        self._check_jsonl_targets()
        import datasets

        data = self.config.data
        if data is None:
            raise DataError("no data given", where=self.where, field="task.data",
                            fix="set task.data to a file, a folder or a hub data set id")
        datasets.disable_progress_bars()
        # Its own error logging repeats, less clearly, what the DataError below says.
        verbosity = datasets.logging.get_verbosity()
        datasets.logging.set_verbosity(datasets.logging.CRITICAL)
        try:
            if isinstance(data, dict):
                resolved = {split: self.resolve(v, f"task.data.{split}") for split, v in data.items()}
                builders = {b for _, b in resolved.values()}
                if len(builders) != 1 or None in builders:
                    raise DataError("a {split: file} mapping needs local files of one type",
                                    where=self.where, field="task.data", fix="convert them to one format")
                builder = builders.pop()
                ds = datasets.load_dataset(builder, data_files={s: p for s, (p, _) in resolved.items()},
                                           **self._reader_options(resolved))
            else:
                path, builder = self.resolve(data)
                if builder:
                    ds = datasets.load_dataset(builder, data_files=path,
                                               **self._reader_options({"x": (path, builder)}))
                else:
                    ds = datasets.load_dataset(path, self.config.hub_config)
            # Inside the try: pyarrow only decodes the strings here (invalid UTF-8 fails now).
            return {name: split.to_list() for name, split in ds.items()}
        except DataError:
            raise
        except Exception as exc:  # datasets raises many types; all mean "cannot read this data"
            # Its messages name neither the file nor the line ("An error occurred while generating
            # the dataset"): look at the local files ourselves for what is wrong, and where.
            files = resolved.items() if isinstance(data, dict) else [("", self.resolve(data))]
            for split, (file, builder) in files:
                found = diagnose(Path(file)) if builder else None
                if found:
                    problem, fix = found
                    raise DataError(f"data file '{file}' {problem}", where=self.where,
                                    field=f"task.data.{split}" if split else "task.data", fix=fix) from None
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load the data ({type(exc).__name__}: {msg[:300]})",
                            where=self.where, field="task.data",
                            fix="check the file is valid JSONL/CSV/TSV/Parquet in UTF-8, or that the "
                                "hub id is right (offline, only local files load)") from None
        finally:
            datasets.logging.set_verbosity(verbosity)

    def _read_plain_jsonl(self) -> dict[str, list[dict[str, Any]]] | None:
        """Local flat JSONL files without `datasets` (a second saved per run: ladder/tasks/plain_jsonl.py);
        None for anything else, and for any problem, which the datasets path reports."""
        from ladder.tasks.plain_jsonl import read_splits

        data = self.config.data
        try:
            if isinstance(data, dict):
                files = {split: self.resolve(value) for split, value in data.items()}
            elif isinstance(data, str):
                files = {"train": self.resolve(data)}  # one file: what load_dataset names its split
            else:
                return None
        except DataError:
            return None
        if any(b != "json" or not p.lower().endswith(".jsonl") for p, b in files.values()):
            return None
        return read_splits({split: Path(p) for split, (p, _) in files.items()})

    def _check_jsonl_targets(self) -> None:
        """Refuse a list or mapping target in a local .jsonl file before `datasets` reads it: pyarrow
        turns a column mixing text and lists into JSON text ('["a", "b"]'), which would then be
        scored as an answer, and fails on one that differs between files without saying where."""
        data = self.config.data
        entries = data.items() if isinstance(data, dict) else [("", data)] if isinstance(data, str) else []
        for split, value in entries:
            try:
                path, builder = self.resolve(value)
            except DataError:
                return  # reported by the loader, with its field
            if builder != "json" or not path.lower().endswith(".jsonl"):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    for i, line in enumerate(f, 1):
                        try:
                            row = json.loads(line) if line.strip() else None
                        except ValueError:
                            continue  # diagnose() names bad lines
                        if isinstance(row, dict) and isinstance(row.get(self.config.target), (list, dict)):
                            self.check_target(row[self.config.target], f"line {i} of '{value}'")
            except (OSError, UnicodeDecodeError):
                continue  # diagnose() names the encoding

    @staticmethod
    def _reader_options(resolved: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
        if any(p.lower().endswith(".tsv") for p, _ in resolved.values()):
            return {"delimiter": "\t", "quoting": 3}  # 3 = csv.QUOTE_NONE: TSV quotes are text
        return {}
