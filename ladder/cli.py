"""`ladder run | check | compare | climb | atlas | report` — the command line.

Only light modules are imported here; the runner (and through it torch) is imported inside the
commands, so `ladder --help` stays instant.
"""

from __future__ import annotations

import functools
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
Results = Annotated[Path, typer.Argument(help="An experiment's results folder, e.g. results/quickstart.")]
Only = Annotated[Optional[list[str]], typer.Option(help="Run only these stages (by name).")]
Embed = Annotated[str, typer.Option(help="Embedder for the atlas: tfidf (fast, no model), hf, hf:MODEL "
                                         "(mean-pooled hidden states of a local model), openai:MODEL.")]


class Interrupted(Exception):
    """Ctrl-C inside a command. click (through typer) turns a KeyboardInterrupt into a bare exit 130
    before main() could say anything, so the commands re-raise it as this, which click lets through."""


def _unmeasured(results: list, folder: Path) -> None:
    """Exit 1 (NothingMeasured) when a stage ended with n=0: its row has no number, and a script
    checking the exit code must not take the run for a result."""
    from ladder.errors import NothingMeasured
    from ladder.store import read_jsonl

    empty = [r for r in results if r.metric.n == 0]
    if not empty:
        return
    said = []
    for r in empty:
        path = folder / r.stage / r.run_id / "samples.jsonl"
        why = next((s.get("error") for rec in reversed(read_jsonl(path)) if rec.get("error")
                    for s in rec.get("samples", []) if s.get("error")), None)
        failed = r.stats.get("errors", 0)
        said.append(f"{r.stage} ({failed} examples failed after all retries" + (f", e.g. {why}" if why else "")
                    + f"; see {path})" if failed else f"{r.stage} (no example was scored)")
    raise NothingMeasured(f"the run finished, but {len(empty)} of {len(results)} stages scored no example "
                          f"(n=0), so their rows hold no number: {'; '.join(said)}",
                          fix="fix the cause (server, key, model name, base_url), then run the same command "
                              "again: finished examples are kept and only the failed ones are retried")


def _show(folder: Path, title: str) -> None:
    """The stage table, then the next steps: what every command that runs stages ends with."""
    from ladder.compare import Evidence, next_steps, print_next_steps
    from ladder.table import print_table, read_summary

    print_table(read_summary(folder), title=title)
    print_next_steps(next_steps(Evidence.load(folder)))


@app.command()
def run(config: Config, set: Sets = None, only: Only = None):
    """Run the experiment's stages in order; finished stages are reused, interrupted ones resume.

    Exit codes, for scripts:
    0  every stage measured something;  1  a stage scored no example (n=0);
    2  bad input;  130  interrupted (Ctrl-C; run the same command again to resume)."""
    from ladder.config import load_experiment
    from ladder.runner import run_experiment

    exp = load_experiment(config, set or [])
    results = run_experiment(exp, only=only)
    _show(exp.results_path, f"{exp.config.name}  ({exp.results_path})")
    _unmeasured(results, exp.results_path)


@app.command()
def check(config: Config, set: Sets = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False):
    """Validate the config and data and print what a run would do, without generating anything."""
    from rich.table import Table

    from ladder.config import load_experiment
    from ladder.progress import stdout_console
    from ladder.runner import estimate_run

    exp = load_experiment(config, set or [])
    out = estimate_run(exp)
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
        if "skipped" in s:
            console.print(f"  {s['stage']}: skipped ({s['skipped']})", highlight=False)
            continue
        table.add_row(s["stage"], s["model"], str(s["examples"]), str(s["samples"]), f"{s['prompt_tokens']:,}",
                      f"{s['max_output_tokens']:,}", f"{s['cost_usd']:.4f}")
    console.print(table)
    for s in out["stages"]:
        if s.get("scorer"):
            sc = s["scorer"]
            console.print(f"  {s['stage']}: cost $ includes up to {sc['calls']:,} {sc['scorer']} scorer calls "
                          f"({sc['prompt_tokens']:,} prompt, {sc['max_output_tokens']:,} max output tokens, "
                          f"${sc['cost_usd']:.4f})", highlight=False)


@app.command()
def compare(results: Results):
    """Reprint an experiment's stage table (with paired differences) and next steps from disk."""
    if not (results / "summary.csv").exists():
        raise LadderError("no summary.csv here", where=str(results),
                          fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    _show(results, str(results))


@app.command()
def climb(config: Config, set: Sets = None,
          target: Annotated[Optional[float], typer.Option(
              help="Stop at the first rung whose metric reaches this (overrides the YAML's escalate.target).")] = None,
          by: Annotated[Optional[str], typer.Option(
              help="What must reach the target: ci_low (default: the CI's lower bound) or value.")] = None,
          until: Annotated[Optional[str], typer.Option(help="Stop after this stage whatever it scores.")] = None,
          only: Only = None):
    """Run the rungs in order and stop at the first that reaches the target; climb.json says why.

    Exit codes, for scripts:
    0  the target was reached;
    3  it was not (every rung ran, or --until stopped the climb below it);
    1  a stage scored no example (n=0);  2  bad input;  130  interrupted (Ctrl-C)."""
    from ladder.climb import climb as run_climb
    from ladder.climb import print_climb
    from ladder.config import load_experiment

    exp = load_experiment(config, set or [])
    record, results = run_climb(exp, target=target, by=by, until=until, only=only)
    print_climb(record)
    _show(exp.results_path, f"{exp.config.name}  ({exp.results_path})")
    _unmeasured(results, exp.results_path)
    if not record.reached:
        raise typer.Exit(3)


@app.command()
def atlas(results: Results, embed: Embed = "tfidf",
          text: Annotated[str, typer.Option(help="What to embed: both (prompt + completion), completion or prompt.")] = "both",
          stage: Annotated[Optional[list[str]], typer.Option(help="Only these stages (default: all).")] = None,
          out: Annotated[Optional[Path], typer.Option(help="Output file (default: <results>/atlas.html).")] = None,
          seed: int = 0):
    """Map every sample of every stage to 2-D (embedding + UMAP) in one offline HTML page."""
    from ladder.atlas import write

    if text not in ("both", "completion", "prompt"):
        raise LadderError(f"--text {text} is not one of both, completion, prompt", field="--text")
    path = write(results, out, how=embed, text=text, stages=stage, seed=seed)
    print(path)


@app.command()
def report(results: Results, embed: Embed = "tfidf",
           no_atlas: Annotated[bool, typer.Option("--no-atlas", help="Leave the sample atlas out.")] = False,
           out: Annotated[Optional[Path], typer.Option(help="Output file (default: <results>/report.html).")] = None):
    """One offline HTML page: table with CIs and paired diffs, curves, warnings, next steps, atlas."""
    from ladder.report import write

    print(write(results, out, atlas=not no_atlas, embed=embed))


def _interruptible(command):
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted() from None
    return run


for _info in app.registered_commands:  # after every command is defined above
    _info.callback = _interruptible(_info.callback)


def main() -> None:
    try:
        app()
    except LadderError as exc:
        from rich.text import Text

        from ladder.progress import console

        console.print(Text("error: ", style="bold red") + Text(exc.render()), soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
