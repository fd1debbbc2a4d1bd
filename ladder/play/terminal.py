"""`ladder try`: the playground from a terminal — the same core as the page, printed side by side
(fit to the terminal's width, as the results table is), the metric with n and CI under each
column and the paired Δ from the first column."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

from ladder.errors import LadderError
from ladder.play.core import Column, Playground, model_label
from ladder.play.numbers import column_metric, paired


def parse_shots(pg: Playground, text: str | None) -> list[dict[str, Any]]:
    """--shots ID,ID (gold answers) or ID=ANSWER,ID (an answer typed for that row)."""
    out = []
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        rid, sep, answer = item.partition("=")
        ex = pg.example(rid)
        out.append({"id": rid, "answer": answer if sep else ex.target})
    return out


def columns(pg: Playground, instruction: str | None, template: str | None, models: Sequence[str],
            shots: list[dict[str, Any]], generation: dict[str, Any]) -> list[Column]:
    """Per model: the YAML's prompt, then (when anything was edited) the edited version beside it,
    so the change is seen on the same rows; the edited column is the last of its model."""
    base = pg.base_column()
    specs = [pg.model_spec(m) for m in models] or [base.model]
    edited = instruction is not None or template is not None or shots or generation
    out = []
    for spec in specs:
        if edited:
            out.append(pg.add_column(Column(base.instruction, base.template, spec)))
        col = Column(base.instruction if instruction is None else instruction,
                     base.template if template is None else template, spec, dict(generation), shots)
        out.append(pg.add_column(col))
    return out


def run_all(pg: Playground, cols: list[Column], rows: list[str]) -> None:
    """Every column at once (each on its own thread, as the page runs them)."""
    failed: list[BaseException] = []

    def one(c: Column) -> None:
        try:
            pg.run(c.id, rows)
        except BaseException as exc:  # e.g. BudgetExceeded: said once, in this thread, below
            failed.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in cols]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]


def show(pg: Playground, cols: list[Column], rows: list[str]) -> None:
    from rich.table import Table

    from ladder.progress import stdout_console

    console = stdout_console()
    table = Table(show_lines=True, title_justify="left",
                  title=f"{pg.exp.config.name}: {len(rows)} rows (seed {pg.seed}), session {pg.log.session}")
    table.add_column("row", overflow="fold", ratio=1)
    table.add_column("input", overflow="fold", ratio=3)
    table.add_column("gold", overflow="fold", ratio=1)
    for c in cols:
        table.add_column(f"{c.label} {model_label(c.model)}", overflow="fold", ratio=3)
    for rid in rows:
        view = pg.row_view(rid)
        cells = []
        for c in cols:
            cell = pg.cells.get((rid, c.id))
            if cell is None:
                cells.append("")
            elif cell.error:
                cells.append(f"[red]error[/red]: {cell.error}")
            else:
                mark = "" if cell.score is None else (" ✓" if cell.score == 1 else " ✗" if cell.score == 0
                                                      else f" ({cell.score:.2f})")
                cells.append(" | ".join(o.strip() for o in cell.outputs) + mark)
        table.add_row(rid, view["text"], view["target"] or "—", *cells)
    console.print(table)
    first = pg.scores(cols[0].id, rows)
    for i, c in enumerate(cols):
        mine = pg.scores(c.id, rows)
        line = f"{c.label} {model_label(c.model)}: {pg.metric.name} {column_metric(mine)['text']}"
        if i:
            line += f"; vs {cols[0].label} {model_label(cols[0].model)}: {paired(mine, first)['text']}"
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    cost = sum(pg.cells[(r, c.id)].cost for r in rows for c in cols if (r, c.id) in pg.cells)
    console.print(f"cost ${cost:.4f} (session ${pg.spent:.4f} of ${pg.budget:.2f}); log {pg.log.path}",
                  highlight=False, markup=False, soft_wrap=True)


def try_command(config: Path, sets: list[str], instruction: str | None, template: str | None,
                models: list[str], n: int, shots: str | None, message: list[str], generation: dict[str, Any],
                save_variant: str | None, budget: float) -> None:
    from ladder.play.variant import digest, overrides, save

    opened = digest(config)
    pg = Playground(config, sets, n=n, budget=budget, resume=False)
    if save_variant and len(models) > 1:
        raise LadderError(f"--save-variant {save_variant} saves one column, and {len(models)} models make "
                          f"{len(models)}", field="--save-variant", fix="give one --model with --save-variant")
    cols = columns(pg, instruction, template, models, parse_shots(pg, shots), generation)
    if message:
        rows = [pg.add_message(m) for m in message]
    else:
        rows = pg.rows()
    run_all(pg, cols, rows)
    show(pg, cols, rows)
    if save_variant:
        col = cols[-1]  # the edited version (the only column when nothing was edited)
        bad = [pg.cells[(r, col.id)].error for r in rows if (r, col.id) in pg.cells and pg.cells[(r, col.id)].error]
        if bad:
            raise LadderError(f"not saved: {len(bad)} of {len(rows)} cells failed, e.g. {bad[0]}",
                              field="--save-variant", fix="fix the column first, then save it")
        save(config, save_variant, overrides(pg, col), opened)
        pg.log.write({"kind": "variant", "name": save_variant, "column": col.id})
        print(f"saved variant {save_variant} in {config}: `ladder run {config} --variant {save_variant}` "
              f"evaluates it on the whole subsample")
    dead = [c for c in cols if all(pg.cells[(r, c.id)].error for r in rows if (r, c.id) in pg.cells)]
    if dead:  # printed above with the other columns' answers; the exit status tells a script
        c = dead[0]
        why = next(pg.cells[(r, c.id)].error for r in rows if (r, c.id) in pg.cells)
        raise LadderError(f"column {c.label} {model_label(c.model)} failed on every row"
                          + (f" (and {len(dead) - 1} more columns)" if len(dead) > 1 else "") + f": {why}",
                          fix="see its cells in the table above; the other columns' answers are printed and logged")
