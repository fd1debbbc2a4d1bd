"""Prompt templates: `{field}` (str.format) or Jinja2.

A template containing `{{` or `{%` is Jinja (what lm-eval and promptfoo write); anything else is
a `{field}` template, exactly as before. Both kinds get the same variables: the row's columns and,
for tasks with answer choices, `choices` — in a `{field}` template the choices as lettered lines
("A. ...", one a line), in Jinja the list itself (so `{% for c in choices %}` works).

Jinja runs sandboxed (a data row or a shared config cannot reach Python internals) with
StrictUndefined: a name the row lacks is an error, never an empty string in the prompt.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any, Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def is_jinja(template: str) -> bool:
    # `{%` cannot occur in a valid {field} template (a field name must be an identifier).
    return "{{" in template or "{%" in template


@functools.lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # keep_trailing_newline: a template's text is the prompt, byte for byte, as in {field} ones.
    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=256)  # asked once per data row: parse each template once
def _compiled(template: str) -> Any:
    return _env().from_string(template)


@functools.lru_cache(maxsize=256)
def jinja_fields(template: str) -> tuple[str, ...]:
    """The variables a Jinja template reads from its row; a ValueError for a syntax error."""
    from jinja2 import TemplateSyntaxError, meta

    env = _env()
    try:
        ast = env.parse(template)
    except TemplateSyntaxError as exc:
        raise ValueError(f"malformed Jinja template (line {exc.lineno} of the template: {exc.message}); "
                         f"check the {{{{ }}}} and {{% %}} pairs") from None
    return tuple(sorted(n for n in meta.find_undeclared_variables(ast) if n not in env.globals))


def lettered(choices: Sequence[str]) -> str:
    """The choices as 'A. first' lines: what `{choices}` shows in a {field} template."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def render(template: str, variables: dict[str, Any], choices: Sequence[str] | None = None) -> str:
    """The template filled from `variables` (a row) plus `choices`. A KeyError names a missing
    field; a ValueError says what else went wrong in a Jinja template."""
    if not is_jinja(template):
        if choices is not None:
            variables = {**variables, "choices": lettered(choices)}
        return template.format_map(variables)
    from jinja2 import TemplateError, UndefinedError

    if choices is not None:
        variables = {**variables, "choices": list(choices)}
    try:
        return _compiled(template).render(variables)
    except UndefinedError as exc:
        m = re.match(r"'(\w+)' is undefined", str(exc))
        if m:
            raise KeyError(m.group(1)) from None
        raise ValueError(str(exc)) from None
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    except (TypeError, ValueError, LookupError, ArithmeticError) as exc:  # e.g. {{ a + 1 }} on text
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


@functools.lru_cache(maxsize=256)  # asked once per data row: parse each template once
def template_fields(template: str) -> tuple[str, ...]:
    """The {field} names a template uses; a ValueError for a malformed template."""
    names = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is not None:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise ValueError(f"placeholder '{{{name}}}' must be a plain column name")
                if spec or conversion:  # {x!r} would quote the text, {x:>10} pad it: never what a prompt means
                    raise ValueError(f"placeholder '{{{name}{'!' + conversion if conversion else ''}"
                                     f"{':' + spec if spec else ''}}}' has a conversion or format spec, which "
                                     f"a prompt template does not apply; write '{{{name}}}'")
                names.append(name)
    except ValueError as exc:
        raise ValueError(f"malformed template ({exc}); use {{field}} for columns and "
                         f"{{{{ }}}} for literal braces") from None
    return tuple(names)


def fields(template: str) -> tuple[str, ...]:
    """The row fields a template of either kind names (`choices` included); a ValueError naming
    the problem for a malformed one. Checked against the data before anything is written."""
    if is_jinja(template):
        return jinja_fields(template)
    try:
        return template_fields(template)
    except ValueError as exc:
        # template_fields' own advice ({{ }} for a literal brace) would turn a task template into Jinja.
        raise ValueError(str(exc).split("; use")[0] + "; use {field} for columns, or write the template "
                         "in Jinja ({{ field }}), where single braces are plain text") from None
