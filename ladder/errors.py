"""User-facing errors: one paragraph naming the file, the field and the fix; exit code 2 (1 for a
run that finished with a stage that measured nothing).

Anything raised as a LadderError is printed without a traceback by the CLI. Everything else is
a bug in ladder and keeps its traceback.
"""

from __future__ import annotations


class LadderError(Exception):
    """A problem the user can fix. `where` names the file (and line), `field` the dotted key."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None,
                 fix: str | None = None):
        self.message = message
        self.where = where
        self.field = field
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        head = ""
        if self.where:
            head += f"{self.where}: "
        if self.field:
            head += f"field '{self.field}': "
        text = head + self.message.rstrip(".") + "."
        if self.fix:
            text += " Fix: " + self.fix.rstrip(".") + "."
        return text


class NothingMeasured(LadderError):
    """A run finished, but some stage scored no example at all (n=0): exit code 1, so a script
    never mistakes an empty row for a result."""

    exit_code = 1


class ConfigError(LadderError):
    """The experiment YAML is malformed or names something that does not exist."""


class DataError(LadderError):
    """The task's data cannot be loaded or does not have the fields the config names."""


class BackendError(LadderError):
    """A backend cannot be set up (missing key, unknown model, ...)."""


class MissingKey(BackendError):
    """An API model's key is not in the environment. `ladder run` stops on it; `ladder check`,
    which sends nothing billed, counts and prices the plan anyway and says so (`missing_key`).
    `env` is the variable's name."""

    def __init__(self, message: str, *, env: str | None = None, where: str | None = None,
                 field: str | None = None, fix: str | None = None):
        self.env = env
        super().__init__(message, where=where, field=field, fix=fix)
