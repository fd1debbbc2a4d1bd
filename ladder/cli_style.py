"""typer's help, made to read like a command line: usage `run [OPTIONS] CONFIG` (not `{config}`),
no `<bool>` beside a flag, a repeatable argument's item type. ladder/cli.py sets these classes on
its commands once every command is defined.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup


class _Command(TyperCommand):
    """typer's command, with a usage line that reads like a command line (`run [OPTIONS] CONFIG`,
    not `{config}`) and no `<bool>` beside --help."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self.options_metavar or "", *(p.metavar or (p.name or "").upper() for p in self.get_params(ctx)
                                              if isinstance(p, TyperArgument))]

    def get_help_option(self, ctx: Any) -> Any:
        return _flag(super().get_help_option(ctx))

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:  # a repeatable argument (compare's folders) shows its item type, not list[Path]
            if isinstance(p, TyperArgument) and p.nargs != 1:
                p.display_type_rich = lambda ctx, _p=p: f"<{_p._bare_type(_p.type_descriptor.annotation.__args__[0]).lower()}>"
            elif isinstance(p, TyperArgument) and p.metavar:  # DATA, KEY: the metavar and help say it
                p.display_type_rich = lambda ctx: ""
        return params


class _Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _flag(super().get_help_option(ctx))


def _flag(option: Any) -> Any:
    if option is not None:
        option.metavar = ""  # a flag takes no value: nothing to show in the type column
    return option
