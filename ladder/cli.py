"""`ladder run | check | compare` — the command line.

Only light modules are imported here; the runner (and through it torch) is imported inside the
commands, so `ladder --help` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ladder.errors import LadderError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Take an LLM research idea up a ladder of methods, cheapest first: "
                       "zero_shot → few_shot → best_of_n → sft → rl. One YAML file, one table.")

Config = Annotated[Path, typer.Argument(help="Experiment YAML file, e.g. configs/quickstart.yaml.")]
Sets = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a config key: --set subsample.n=500 --set stages.1.k=8 (value is YAML).")]


@app.command()
def run(config: Config, set: Sets = None,
        only: Annotated[Optional[list[str]], typer.Option(help="Run only these stages (by name).")] = None):
    """Run the experiment's stages in order; finished stages are reused, interrupted ones resume."""
    from ladder.config import load_experiment
    from ladder.runner import run_experiment
    from ladder.table import print_table, read_summary

    exp = load_experiment(config, set or [])
    run_experiment(exp, only=only)
    print_table(read_summary(exp.results_path), title=f"{exp.config.name}  ({exp.results_path})")


@app.command()
def check(config: Config, set: Sets = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False):
    """Validate the config and data and print what a run would do, without generating anything."""
    from rich.table import Table

    from ladder.config import load_experiment
    from ladder.progress import stdout_console
    from ladder.runner import check as plan

    exp = load_experiment(config, set or [])
    out = plan(exp)
    if as_json:
        print(json.dumps(out, indent=2))
        return
    console = stdout_console()
    console.print(f"[bold]{out['experiment']}[/bold] → {out['results']}: config and data OK")
    for g in out["guards"]:
        console.print(f"  {g['level']} {g['name']}: {g['message']}")
    table = Table(title_justify="left")
    for col in ("stage", "model", "examples", "samples", "prompt tokens", "max output tokens", "cost $"):
        table.add_column(col, justify="left" if col in ("stage", "model") else "right")
    for s in out["stages"]:
        table.add_row(s["stage"], s["model"], str(s["examples"]), str(s["samples"]), f"{s['prompt_tokens']:,}",
                      f"{s['max_output_tokens']:,}", f"{s['cost_usd']:.4f}")
    console.print(table)


@app.command()
def compare(results: Annotated[Path, typer.Argument(help="An experiment's results folder, e.g. results/quickstart.")]):
    """Reprint an experiment's stage table from disk."""
    from ladder.table import print_table, read_summary

    if not (results / "summary.csv").exists():
        raise LadderError("no summary.csv here", where=str(results),
                          fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    print_table(read_summary(results), title=str(results))


def main() -> None:
    try:
        app()
    except LadderError as exc:
        from rich.text import Text

        from ladder.progress import console

        console.print(Text("error: ", style="bold red") + Text(exc.render()), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
