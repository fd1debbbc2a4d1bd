"""Local plugins without packaging: `plugins: [my_stage.py, mypkg.metrics]` in the experiment YAML
(files relative to it, or importable modules) and `--plugin PATH_OR_MODULE` on `ladder run/check`.

Loading a plugin runs it, as inspect_ai loads a task file: its `ladder.register(...)` calls take
effect, and each Stage, Metric or Backend class it defines with a Config of its own is registered
under the name its Config declares (`type: Literal["cot"] = "cot"`, `backend: Literal["keyword"]`).
A file is imported under its stem (my_stage.py → module `my_stage`), so "my_stage:Attr" targets
resolve to it.

Also here: a YAML `type:` (or `backend:`) written as a "module:attr" import path whose class
declares its name with a Literal is replaced by that name (registered to the path), so the
class's Config validates it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable

from ladder.errors import ConfigError

_LOADED: dict[str, int] = {}
"""Plugin file → its modification time when it was run: a second validation (a variant) does not
run an unchanged file again."""

NAME_FIELD = {"stage": "type", "metric": "type", "backend": "backend"}
"""The Config field that holds a plugin class's YAML name, per registry."""


def load_plugins(specs: Iterable[Any], base_dir: Path | None = None, where: str | None = None,
                 field: str = "plugins", base: str = "the YAML file's folder") -> None:
    """Load each plugin: a path to a .py file (relative to `base_dir`, which is `base` in words:
    the YAML's folder) or a module name. A ConfigError (exit 2) naming the plugin, `where` it was
    asked for and `field` when one cannot be found or fails to import."""
    for i, spec in enumerate(specs):
        key = f"{field}.{i}" if field == "plugins" else field
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"a plugin is a .py file's path or a module name, not {spec!r}", where=where,
                              field=key, fix="write e.g. plugins: [my_stage.py, mypkg.metrics]")
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            path = Path(spec).expanduser()
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            module = _run_file(spec, path.resolve(), where, key, base)
        else:
            module = _import(spec, where, key)
        register_classes(module)


def load_recorded(specs: Any) -> None:
    """Load the plugins a results folder's experiment.yaml records (absolute paths, or modules),
    so that reading the results knows their stages' families. One that is gone, or no longer
    imports, is left out: its rows read as plain ones (ladder.evidence.stage_class)."""
    for spec in specs if isinstance(specs, list) else []:
        try:
            load_plugins([spec])
        except ConfigError:
            continue


def _run_file(spec: str, path: Path, where: str | None, key: str, base: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"plugin file '{spec}' not found (looked for {path})", where=where, field=key,
                          fix=f"give the path relative to {base}, or an absolute one")
    name = path.stem
    mtime = path.stat().st_mtime_ns
    held = sys.modules.get(name)
    if held is not None and Path(getattr(held, "__file__", "") or "").resolve() != path:
        raise ConfigError(f"plugin file '{spec}' would be imported as module '{name}', which is already "
                          f"another module ({getattr(held, '__file__', None) or 'built in'})", where=where,
                          field=key, fix=f"rename {path.name} to a name no installed module has")
    if held is not None and _LOADED.get(str(path)) == mtime:
        return held  # run already, unchanged since: its classes are registered again, not run again
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before it runs: its own "name:Attr" registrations resolve to it
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _failed(spec, exc, where, key) from None
    _LOADED[str(path)] = mtime
    return module


def _import(spec: str, where: str | None, key: str) -> Any:
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise ConfigError(f"plugin module '{spec}' not found", where=where, field=key,
                              fix="install it, put its folder on PYTHONPATH, or give a .py file's path") from None
        raise _failed(spec, exc, where, key) from None
    except Exception as exc:
        raise _failed(spec, exc, where, key) from None


def _failed(spec: str, exc: BaseException, where: str | None, key: str) -> ConfigError:
    """The plugin's own error, with the line of the plugin that raised it (not a traceback)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return ConfigError(f"plugin '{spec}' failed to import: {type(exc).__name__}: {exc}{at}", where=where,
                       field=key, fix="fix the plugin (python it to see the whole traceback)")


def register_classes(module: Any) -> list[tuple[str, str]]:
    """Register each Stage, Metric and Backend class `module` defines whose Config, defined there
    too, declares its YAML name: [(kind, name)] registered. A subclass of a built-in that keeps its
    parent's Config is not registered (it would take the built-in's name)."""
    from ladder.registry import register

    bases = _bases()
    out = []
    for attr, obj in vars(module).items():
        if not isinstance(obj, type) or obj.__module__ != module.__name__:
            continue
        for kind, base in bases.items():
            if issubclass(obj, base) and obj is not base and obj.Config.__module__ == module.__name__:
                name = declared_name(obj, kind)
                if name:
                    register(kind, name, f"{module.__name__}:{attr}")
                    out.append((kind, name))
    return out


def _bases() -> dict[str, type]:
    """The base classes a plugin can subclass, among those already imported (a plugin that
    subclassed one imported it; nothing heavy is imported here)."""
    where = {"stage": ("ladder.stages", "Stage"), "metric": ("ladder.metrics", "Metric"),
             "backend": ("ladder.backends.base", "Backend")}
    return {kind: getattr(sys.modules[mod], cls) for kind, (mod, cls) in where.items() if mod in sys.modules}


def declared_name(cls: type, kind: str) -> str | None:
    """The name `cls.Config` declares for its YAML `type:` (`backend:`): its field's default."""
    field = getattr(cls.Config, "model_fields", {}).get(NAME_FIELD[kind])
    default = getattr(field, "default", None)
    return default if isinstance(default, str) and ":" not in default else None


def resolve_plugins(raw: dict[str, Any], source: Path | None) -> dict[str, Any]:
    """What validation starts from: the YAML's `plugins:` loaded (paths relative to its folder),
    and each stage `type:`, metric `type:` and model `backend:` written as "module:attr" replaced
    by the name its class declares, when it declares one (registered to that path): its Config's
    Literal then accepts it. Returns `raw` itself when nothing changes, else a changed copy."""
    where = str(source) if source else None
    plugins = raw.get("plugins")
    if plugins is not None:
        if not isinstance(plugins, list):
            plugins = [plugins]
        load_plugins(plugins, source.parent if source else None, where)
    out = dict(raw)
    if isinstance(raw.get("stages"), list):
        out["stages"] = [_declared(s, "stage", "type", where) for s in raw["stages"]]
    if isinstance(raw.get("metric"), (dict, str)):
        out["metric"] = _declared(raw["metric"], "metric", "type", where)
    if isinstance(raw.get("model"), dict):
        out["model"] = _declared(raw["model"], "backend", "backend", where)
    return out


def _declared(entry: Any, kind: str, key: str, where: str | None) -> Any:
    from ladder.registry import import_object, register

    value = entry if isinstance(entry, str) else entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, str) or ":" not in value:
        return entry
    try:
        cls = import_object(value)
    except ConfigError:
        return entry  # validation says what is wrong with it, where
    base = _bases().get(kind)
    scorer = getattr(sys.modules.get("ladder.scorers"), "Scorer", None)
    if base is None or not isinstance(cls, type) or not issubclass(cls, base) \
            or (scorer is not None and issubclass(cls, scorer)):  # a scorer path is the scorers' own form
        return entry
    name = declared_name(cls, kind)
    if name is None:
        return entry
    register(kind, name, value)
    return name if isinstance(entry, str) else {**entry, key: name}
