"""`ladder run | check | compare | climb | atlas | report | try | play` — the command line.

Only light modules are imported here; the runner (and through it torch) is imported inside the
commands, so `ladder --help` stays instant.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from ladder.cli_style import _Command, _Group

from ladder.errors import LadderError, NothingMeasured

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Take an LLM research idea up a ladder of methods, cheapest first: "
                       "zero_shot → few_shot → best_of_n → sft → rl. One YAML file, one table.")

# metavar= throughout: typer's own (<list[str]>, <bool>, {config}) read like Python, not like a command line.
Config = Annotated[Path, typer.Argument(metavar="CONFIG", help="Experiment YAML file, e.g. configs/quickstart.yaml.")]
Sets = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Override a config key: --set subsample.n=500 --set stages.1.k=8 (value is YAML; repeatable).")]
VariantOpt = Annotated[Optional[list[str]], typer.Option(
    "--variant", metavar="NAME", help="Run only this variant of the YAML's variants/sweep (repeatable); "
                                      "`ladder variants exp.yaml` lists the names.")]
Results = Annotated[Path, typer.Argument(metavar="RESULTS",
                                         help="An experiment's results folder, e.g. results/quickstart.")]
Only = Annotated[Optional[list[str]], typer.Option(metavar="STAGE",
                                                   help="Run only this stage (by name; repeatable).")]
PluginOpt = Annotated[Optional[list[str]], typer.Option(
    "--plugin", metavar="PATH_OR_MODULE", help="A plugin to load first: a .py file or a module that defines or "
    "registers stages, metrics or backends (repeatable; the YAML's `plugins:` are loaded too).")]
Embed = Annotated[str, typer.Option(metavar="EMBEDDER",
                                    help="Embedder for the atlas: tfidf (fast, no model), hf, hf:MODEL "
                                         "(mean-pooled hidden states of a local model), openai:MODEL.")]
Wide = Annotated[bool, typer.Option("--wide", metavar="", help="Also print each stage's stop-hit rate, tokens, "
                                                              "cost and seconds (a second table).")]


def _version(value: bool) -> None:
    if value:
        import platform

        from ladder import __version__
        from ladder.manifest import PACKAGES, package_versions

        # The set a result depends on, as manifest.json records it: what a bug report should quote.
        found = package_versions()
        print(f"ladder {__version__}")
        print(f"python {platform.python_version()}")
        for pkg in PACKAGES[1:]:
            print(f"{pkg} {found.get(pkg, 'not installed')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                                help="Print the versions of ladder, Python and the packages a result depends on, and exit.")] = False) -> None:
    """Take an LLM research idea up a ladder of methods, cheapest first."""


class Interrupted(Exception):
    """Ctrl-C inside a command. click (through typer) turns a KeyboardInterrupt into a bare exit 130
    before main() could say anything, so the commands re-raise it as this, which click lets through."""


def _show(folder: Path, title: str, wide: bool = False) -> None:
    """The stage table, then the next steps: what every command that runs stages ends with."""
    from ladder.advice import next_steps, print_next_steps
    from ladder.evidence import Evidence
    from ladder.table import print_table, table_rows

    ev = Evidence.load(folder)
    print_table(table_rows(ev), title=title, wide=wide)
    from ladder.labels import agreement_lines

    for line in agreement_lines(ev.results):  # a judged metric checked against labels
        print(f"agreement {line}")
    print_next_steps(next_steps(ev))


@app.command()
def init(data: Annotated[str, typer.Argument(metavar="DATA", help="A CSV/TSV/JSONL/Parquet file, a folder with train/test "
                                                                   "files, or a Hugging Face hub data set id.")],
         out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="The YAML to write.")] = Path("exp.yaml"),
         target: Annotated[Optional[str], typer.Option(metavar="COLUMN", help="The gold-answer column (default: guessed).")] = None,
         field: Annotated[Optional[str], typer.Option(metavar="COLUMN", help="The column the model is shown (default: guessed).")] = None,
         labels: Annotated[Optional[str], typer.Option(metavar="VALUE=WORD,...",
                                                       help="Words for class ids, e.g. 0=negative,1=positive.")] = None,
         instruction: Annotated[Optional[str], typer.Option(metavar="TEXT", help="The system prompt (default: written from the task).")] = None,
         model: Annotated[Optional[str], typer.Option(metavar="SPEC", help="hf:NAME, openai:NAME, anthropic:NAME or a "
                                                                          "model folder (default: ladder-tiny, offline).")] = None,
         judge: Annotated[Optional[str], typer.Option(metavar="SPEC", help="An open-ended task's judge model, e.g. "
                                                                          "openai:gpt-4o-mini (default: --model when it is an API model).")] = None,
         yes: Annotated[bool, typer.Option("--yes", "-y", metavar="", help="Take every guess without asking.")] = False,
         force: Annotated[bool, typer.Option("--force", metavar="", help="Overwrite an existing file.")] = False):
    """Write a first experiment YAML from a data file: target, choices, template and instruction guessed
    (asked on a terminal), every line commented; then `ladder check` and `ladder run` it."""
    from ladder.init import run_init

    def ask(question: str, default: str) -> str:
        return typer.prompt(question, default=default, show_default=True)

    interactive = not yes and sys.stdin.isatty()
    run_init(data, out, cwd=Path.cwd(), force=force, ask=ask if interactive else None, target=target, field_=field, labels=labels,
             instruction=instruction, model=model, judge=judge)


@app.command(name="help")
def help_(key: Annotated[str, typer.Argument(metavar="KEY", help="A config key as the YAML writes it: task.target, "
                                                                "generation.max_tokens, learning_rate, ...")]):
    """Print a config key's type, default and meaning (docs/reference.md has them all)."""
    from rich.markup import escape

    from ladder.progress import stdout_console
    from ladder.reference import explain

    console = stdout_console()
    for e in explain(key):
        console.print(f"[bold]{escape(e.path)}[/bold]  {escape(e.type)}, default {escape(e.default)}", highlight=False)
        console.print(f"  {escape(e.doc or '(no description)')}", highlight=False)


@app.command()
def run(config: Config, set: Sets = None, only: Only = None, variant: VariantOpt = None, wide: Wide = False,
        plugin: PluginOpt = None):
    """Run the experiment's stages in order; finished stages are reused, interrupted ones resume.

    Exit codes, for scripts:
    0  every stage measured something;  1  a stage scored no example (n=0);
    2  bad input;  130  interrupted (Ctrl-C; run the same command again to resume)."""
    from ladder import commands

    exp = commands.load(config, set, plugin or ())  # read and validated once, variants built from it
    done = commands.execute(exp, only, variant)
    _tables(done, wide)
    commands.log(done, "run", set or [])
    done.raise_unmeasured()


def _tables(done: Any, wide: bool) -> None:
    """The combined table of a variants run, or the experiment's own table and next steps."""
    if done.variants is not None:
        from ladder.variants import print_combined

        print_combined(done.variants.rows, done.variants.baseline, done.variants.title)
    else:
        _show(done.folder, f"{done.experiment.config.name}  ({done.folder})", wide=wide)


@app.command()
def check(config: Config, set: Sets = None, variant: VariantOpt = None,
          as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the plan as JSON.")] = False,
          offline: Annotated[bool, typer.Option("--offline", metavar="",
                                                help="Send no request: skip the look at each API server.")] = False,
          plugin: PluginOpt = None):
    """Validate the config and data and print what a run would do, without generating anything.
    Each API server the run would call (stage models and judges) gets one free request (the model
    list) unless --offline: a server that cannot be reached exits 2."""
    from ladder import commands
    from ladder.plan_print import _print_plan

    checked = commands.plan(commands.load(config, set, plugin or ()), variant, offline)
    if as_json:
        print(json.dumps(checked.plan, indent=2))
    elif checked.by_variant:
        for name, out in checked.plan.items():
            _print_plan(out, f"variant {name}: ")
    else:
        _print_plan(checked.plan)
    if checked.failed is not None:
        raise checked.failed


@app.command()
def compare(results: Annotated[list[Path], typer.Argument(
                metavar="RESULTS...", help="One experiment's results folder (reprints its table), or several: each later one is "
                     "compared with the first, example by example.")],
            stage: Annotated[Optional[list[str]], typer.Option(
                metavar="STAGE|FIRST:LATER", help="Compare these stages: NAME, or FIRST:LATER to pair differently named stages "
                     "(default: the stages both have).")] = None,
            unpaired: Annotated[bool, typer.Option(
                "--unpaired", metavar="", help="Compare as independent samples (no example in common needed; wider "
                                   "intervals, marked UNPAIRED).")] = False,
            wide: Wide = False):
    """Reprint an experiment's stage table, or compare experiments paired by example content.

    With several folders: Δ = later − first per stage, paired on the examples whose content (fields,
    target, choices) both scored, whatever their row or id, with 95% CIs and the MDE at 80% power."""
    if len(results) == 1:
        if not (results[0] / "summary.csv").exists():
            raise LadderError("no summary.csv here", where=str(results[0]),
                              fix="pass an experiment folder such as results/quickstart, after `ladder run`")
        from ladder.variants_folder import combined_info

        if combined_info(results[0]):  # a variants experiment: the combined table, every variant
            from ladder.advice import print_next_steps
            from ladder.variants import print_combined
            from ladder.variants_folder import rows, steps

            table, baseline = rows(results[0])
            print_combined(table, baseline, f"{results[0]}  baseline: {baseline}")
            print_next_steps(steps(results[0]))
            return
        from ladder.evidence import Evidence

        if not Evidence.load(results[0]).results:  # an empty table is not a result
            raise NothingMeasured("summary.csv lists no finished stage", where=str(results[0]),
                                  fix="run the experiment's stages first (`ladder run EXP.yaml`)")
        _show(results[0], str(results[0]), wide=wide)
        return
    from ladder.compare import compare as pair_up
    from ladder.compare import print_comparison

    print_comparison(results, pair_up(results, stage, unpaired))


@app.command()
def climb(config: Config, set: Sets = None,
          target: Annotated[Optional[float], typer.Option(
              metavar="NUMBER",
              help="Stop at the first rung whose metric reaches this (overrides the YAML's escalate.target).")] = None,
          by: Annotated[Optional[str], typer.Option(
              metavar="ci_low|value",
              help="What must reach the target: ci_low (default: the CI's lower bound) or value.")] = None,
          until: Annotated[Optional[str], typer.Option(
              metavar="STAGE", help="Stop after this stage whatever it scores.")] = None,
          only: Only = None, variant: VariantOpt = None, wide: Wide = False):
    """Run the rungs in order and stop at the first that reaches the target; climb.json says why.

    Exit codes, for scripts:
    0  the target was reached;
    3  it was not (every rung ran, or --until stopped the climb below it);
    1  a stage scored no example (n=0);  2  bad input;  130  interrupted (Ctrl-C)."""
    from ladder import commands
    from ladder.climb import print_climb

    exp = commands.load(config, set)
    done = commands.execute(exp, only, variant, climb=dict(target=target, by=by, until=until))
    if done.variants is not None:  # each variant climbs on its own; exit 3 unless every one reached the target
        _tables(done, wide)
        for name, record in done.variants.climbs.items():
            print(f"variant {name}:")
            print_climb(record)
    else:
        print_climb(done.climb)
        _tables(done, wide)
    commands.log(done, "climb", set or [])
    done.raise_unmeasured()
    records = done.variants.climbs.values() if done.variants is not None else [done.climb]
    if not all(record.reached for record in records):
        raise typer.Exit(3)


@app.command()
def variants(config: Config, set: Sets = None):
    """Print the YAML's variant names, one a line, for a job array to index:
    `ladder run exp.yaml --variant "$(ladder variants exp.yaml | sed -n "$((SLURM_ARRAY_TASK_ID+1))p")"`."""
    from ladder.variants import list_names

    for name in list_names(config, set or []):
        print(name)


@app.command()
def log(results: Results,
        last: Annotated[Optional[int], typer.Option(metavar="N", help="Only the last N entries.")] = None,
        as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the entries as JSON lines.")] = False):
    """Print the experiment's research log: every run and climb, with its config diff and table."""
    from ladder import history
    from ladder.play.log import print_sessions, sessions

    played = sessions(results)  # playground sessions (rung 0): after the runs, or alone before any run
    if played and not (results / history.LOG).exists():
        print_sessions(played, as_json)
        return
    from ladder.history import LOG, render
    from ladder.store import read_jsonl

    entries = read_jsonl(results / LOG)
    if not entries and (results / "summary.csv").exists():  # an experiment folder, nothing logged
        raise NothingMeasured(f"the research log ({LOG}) is empty", where=str(results),
                              fix="`ladder run` and `ladder climb` write one entry each")
    if not entries:
        raise LadderError(f"no research log ({LOG}) here", where=str(results),
                          fix="pass an experiment folder such as results/quickstart; `ladder run` and "
                              "`ladder climb` write one entry each")
    start = max(0, len(entries) - last) if last else 0
    if as_json:
        print("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries[start:]), end="")
    else:
        print(render(entries[start:], start + 1), end="")
    print_sessions(played, as_json)


@app.command()
def atlas(results: Results, embed: Embed = "tfidf",
          text: Annotated[str, typer.Option(
              metavar="completion|prompt|both",
              help="What places a point: completion (default: same answers cluster), prompt (same question, "
                   "one spot: compare stages per example) or both (completion, prompt beside it at half weight).")
          ] = "completion",
          all_samples: Annotated[bool, typer.Option(
              "--all-samples", metavar="", help="Plot every sample (best_of_n: all N per example). Default: one point per "
                                    "example and stage, the sample the stage kept (best_of_n: the selected one).")
          ] = False,
          stage: Annotated[Optional[list[str]], typer.Option(
              metavar="NAME", help="Only this stage (repeat for several; default: every stage in the table).")] = None,
          out: Annotated[Optional[Path], typer.Option(
              metavar="FILE", help="Output file (default: <results>/atlas.html).")] = None,
          seed: Annotated[int, typer.Option(metavar="INT", help="Seed of the SVD and UMAP layout: the same seed, the same map.")
                          ] = 0):
    """Map the samples of every stage to 2-D (embedding + UMAP) in one offline HTML page, coloured by
    score, with filters (stage, correct, stages disagree) and click-to-pin full text."""
    from ladder.atlas import write

    path = write(results, out, how=embed, text=text, stages=stage, all_samples=all_samples, seed=seed)
    print(path)


@app.command()
def report(results: Results, embed: Embed = "tfidf",
           no_atlas: Annotated[bool, typer.Option("--no-atlas", metavar="", help="Leave the sample atlas out.")] = False,
           out: Annotated[Optional[Path], typer.Option(
               metavar="FILE", help="Output file (default: <results>/report.html).")] = None):
    """One offline HTML page: table with CIs and paired diffs, curves, warnings, next steps, atlas."""
    from ladder.report import write

    print(write(results, out, atlas=not no_atlas, embed=embed))


@app.command()
def label(results: Results,
          stage: Annotated[str, typer.Option(metavar="STAGE", help="The stage whose outputs to label.")],
          n: Annotated[int, typer.Option("--n", metavar="N", help="Outputs to ask about (not labelled yet), in an "
                                                                 "order drawn with --seed.")] = 50,
          from_: Annotated[Optional[str], typer.Option(
              "--from", metavar="FILE", help="Read verdicts instead of asking: JSONL {id, label} lines or a CSV "
                                            "with columns id,label (yes/no); - reads them from stdin.")] = None,
          seed: Annotated[int, typer.Option(metavar="INT", help="Seed of the order outputs are shown in.")] = 0):
    """Record a person's verdicts on a stage's outputs (results/<exp>/labels.jsonl): every judged
    row then shows its metric's agreement with them (accuracy, Cohen's κ, n labelled)."""
    from ladder.labelling import label as record

    record(results, stage, n=n, source=from_, seed=seed)


Budget = Annotated[float, typer.Option(metavar="USD", help="Refuse a run that could take the session's spend past this.")]
Rows = Annotated[int, typer.Option("--n", metavar="N", help="Rows shown: the first N of the test subsample in an "
                                                           "order drawn with the experiment's seed.")]
Models = Annotated[Optional[list[str]], typer.Option(
    "--model", metavar="MODEL", help="A column's model (repeatable): a name on the experiment's backend, "
                                     "BACKEND:NAME (hf, openai, anthropic) or the YAML's `model:` mapping as JSON.")]


def _model_arg(text: str) -> Any:
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise LadderError(f"--model {text}: not a JSON mapping ({exc})", field="--model",
                              fix='write e.g. --model \'{"backend": "openai", "name": "gpt-4o-mini"}\'') from None
    return text


@app.command("try")
def try_(config: Config, set: Sets = None,
         instruction: Annotated[Optional[str], typer.Option(metavar="TEXT", help="The instruction (system prompt) to try.")] = None,
         template: Annotated[Optional[str], typer.Option(metavar="TEXT", help="The user-turn template, e.g. 'Review: {text}'.")] = None,
         model: Models = None, n: Rows = 10,
         shots: Annotated[Optional[str], typer.Option(metavar="ID,ID", help="Pin these rows as shots (gold answer, or ID=ANSWER).")] = None,
         message: Annotated[Optional[list[str]], typer.Option(metavar="TEXT", help="A free message as a row instead of the data (repeatable).")] = None,
         temperature: Annotated[Optional[float], typer.Option(metavar="T", help="Sampling temperature.")] = None,
         top_p: Annotated[Optional[float], typer.Option(metavar="P", help="Nucleus sampling top_p.")] = None,
         max_tokens: Annotated[Optional[int], typer.Option(metavar="N", help="Most new tokens per sample.")] = None,
         samples: Annotated[Optional[int], typer.Option(metavar="N", help="Samples per cell (to see diversity).")] = None,
         save_variant: Annotated[Optional[str], typer.Option(metavar="NAME", help="Write the column into the YAML as "
                                                             "variants.NAME, for `ladder run --variant NAME`.")] = None,
         budget: Budget = 1.0):
    """Rung 0 from the terminal: the test rows under a prompt and models, side by side, with the
    metric (n, 95% CI) per column; every call cached and logged to results/<exp>/playground/."""
    from ladder.play.terminal import try_command

    gen = {k: v for k, v in dict(temperature=temperature, top_p=top_p, max_tokens=max_tokens, n=samples).items()
           if v is not None}
    try_command(config, set or [], instruction, template, [_model_arg(m) for m in model or []], n, shots,
                message or [], gen, save_variant, budget)


@app.command()
def play(config: Config, set: Sets = None, n: Rows = 20, budget: Budget = 1.0,
         port: Annotated[int, typer.Option(metavar="PORT", help="Port (0: a free one).")] = 0,
         host: Annotated[str, typer.Option(metavar="HOST", help="Interface to bind; anything but 127.0.0.1 lets other "
                                                                "machines reach the page (with the token).")] = "127.0.0.1",
         no_browser: Annotated[bool, typer.Option("--no-browser", metavar="", help="Print the URL, do not open it.")] = False,
         new: Annotated[bool, typer.Option("--new", metavar="", help="Start a new session (default: reopen the last).")] = False):
    """Rung 0: a local web page to try prompts and models on the test rows side by side, pin shots,
    chat, and save a column as a variant. Every request must carry the token in the printed URL."""
    from ladder.play.server import serve

    serve(config, set or [], n=n, budget=budget, port=port, host=host, browser=not no_browser, new=new)


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
    if _info.cls is TyperCommand:
        _info.cls = _Command
app.info.cls = _Group


def main() -> None:
    try:
        app()
    except LadderError as exc:
        from rich.text import Text

        from ladder.progress import console

        console.print(Text("error: ", style="bold red") + Text(exc.render()), soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Interrupted):
        from ladder.progress import stop_live

        stop_live()
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
