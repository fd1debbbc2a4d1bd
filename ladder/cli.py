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
from typer.core import TyperArgument, TyperCommand, TyperGroup

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


class Interrupted(Exception):
    """Ctrl-C inside a command. click (through typer) turns a KeyboardInterrupt into a bare exit 130
    before main() could say anything, so the commands re-raise it as this, which click lets through."""


def _unmeasured(results: list, folder: Path) -> None:
    """Exit 1 (NothingMeasured) when a stage ended with n=0: its row has no number, and a script
    checking the exit code must not take the run for a result."""
    from ladder.errors import NothingMeasured
    from ladder.store import read_jsonl
    from ladder.types import Record

    empty = [r for r in results if r.metric.n == 0]
    if not empty:
        return
    said = []
    for r in empty:
        path = folder / r.stage / r.run_id / "samples.jsonl"
        why = next((s.get("error") for rec in map(Record.from_dict, reversed(read_jsonl(path))) if rec.error
                    for s in rec.samples if s.get("error")), None)
        failed = r.stats.errors
        said.append(f"{r.stage} ({failed} examples failed after all retries" + (f", e.g. {why}" if why else "")
                    + f"; see {path})" if failed else f"{r.stage} (no example was scored)")
    raise NothingMeasured(f"the run finished, but {len(empty)} of {len(results)} stages scored no example "
                          f"(n=0), so their rows hold no number: {'; '.join(said)}",
                          fix="fix the cause (server, key, model name, base_url), then run the same command "
                              "again: finished examples are kept and only the failed ones are retried")


def _show(folder: Path, title: str, wide: bool = False) -> None:
    """The stage table, then the next steps: what every command that runs stages ends with."""
    from ladder.advice import next_steps, print_next_steps
    from ladder.evidence import Evidence
    from ladder.table import print_table, table_rows

    ev = Evidence.load(folder)
    print_table(table_rows(ev), title=title, wide=wide)
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
def run(config: Config, set: Sets = None, only: Only = None, variant: VariantOpt = None, wide: Wide = False):
    """Run the experiment's stages in order; finished stages are reused, interrupted ones resume.

    Exit codes, for scripts:
    0  every stage measured something;  1  a stage scored no example (n=0);
    2  bad input;  130  interrupted (Ctrl-C; run the same command again to resume)."""
    from ladder.config import load_experiment
    from ladder.runner import run_experiment
    from ladder.variants import run_main

    done = run_main(config, set or [], only, variant)  # a YAML with variants: each, then one table
    if done is not None:
        _log(done[1], "run", set or [])
        for name, results in done[0].items():
            _unmeasured(results, done[1] / "variants" / name)
        return
    exp = load_experiment(config, set or [])
    results = run_experiment(exp, only=only)
    _show(exp.results_path, f"{exp.config.name}  ({exp.results_path})", wide=wide)
    _log(exp.results_path, "run", set or [])
    _unmeasured(results, exp.results_path)


def _log(folder: Path, command: str, overrides: list[str], outcome: str | None = None) -> None:
    """One entry in results/<exp>/log.jsonl and LOG.md for the run that just finished (n=0 runs too)."""
    from ladder.history import record

    record(folder, command, overrides, outcome)


@app.command()
def check(config: Config, set: Sets = None, variant: VariantOpt = None,
          as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the plan as JSON.")] = False,
          offline: Annotated[bool, typer.Option("--offline", metavar="",
                                                help="Send no request: skip the look at each API server.")] = False):
    """Validate the config and data and print what a run would do, without generating anything.
    Each API server the run would call (stage models and judges) gets one free request (the model
    list) unless --offline: a server that cannot be reached exits 2."""
    from ladder.config import load_experiment
    from ladder.reach import reachability
    from ladder.runner import estimate_run as plan
    from ladder.variants import load_variants

    failures = []

    def reach(out: dict, exp: Any) -> dict:
        if not offline:
            out["reachable"], failed = reachability(exp)
            failures.append(failed)
        return out

    variants = load_variants(config, set or [], variant)  # every variant validated, none run
    if variants:
        plans = {v.name: reach(plan(v.experiment), v.experiment) for v in variants}
        for out in plans.values():  # every variant is measured on the same subsample
            out["power"] = _planned_power(out.get("subsample_n", 0))
        if as_json:
            print(json.dumps(plans, indent=2))
        else:
            for name, out in plans.items():
                _print_plan(out, f"variant {name}: ")
    else:
        exp = load_experiment(config, set or [])
        out = reach(plan(exp), exp)
        out["power"] = _planned_power(out.get("subsample_n", 0))
        if as_json:
            print(json.dumps(out, indent=2))
        else:
            _print_plan(out)
    failed = next((f for f in failures if f is not None), None)
    if failed is not None:
        raise failed


def _print_plan(out: dict, head: str = "") -> None:
    from ladder.progress import stdout_console

    console = stdout_console()
    console.print(f"{head}[bold]{out['experiment']}[/bold] → {out['results']}: config and data OK")
    for g in out["guards"]:
        console.print(f"  {g['level']} {g['name']}: {g['message']}")
    for r in out.get("reachable", ()):  # absent with --offline
        said = f": {r['message']}" if r["message"] and r["status"] == "not probed" else ""
        console.print(f"  {r['status']}: {r['model']} at {r['url']} ({r['field']}){said}", highlight=False)
    table = _plan_table(console.width)
    for s in out["stages"]:
        if "skipped" in s:
            console.print(f"  {s['stage']}: skipped ({s['skipped']})", highlight=False)
            continue
        # Both prices: the list price and the batch API's (model.batch: true); * marks the one paid.
        batch = s.get("cost_usd_batch")
        sc = s.get("scorer") or {}
        scorer = sc.get("cost_usd", 0.0)  # what the scorer pays (its own batch price on batch: true)
        standard = s.get("cost_usd_standard", s["cost_usd"] - scorer) + sc.get("cost_usd_standard", scorer)
        table.add_row(s["stage"], s["model"], str(s["examples"]), str(s["samples"]), f"{s['prompt_tokens']:,}",
                      f"{s['max_output_tokens']:,}", f"{standard:.4f}" + ("" if s.get("batch") else "*"),
                      "—" if batch is None else f"{batch + scorer:.4f}" + ("*" if s.get("batch") else ""))
    console.print(table)
    console.print("  * what the run pays; batch cost: with model.batch: true (the provider's batch API, "
                  "results within 24 h)", highlight=False)
    for s in out["stages"]:
        if s.get("scorer"):
            sc = s["scorer"]
            console.print(f"  {s['stage']}: cost $ includes up to {sc['calls']:,} {sc['scorer']} scorer calls "
                          f"({sc['prompt_tokens']:,} prompt, {sc['max_output_tokens']:,} max output tokens, "
                          f"${sc['cost_usd']:.4f})", highlight=False)
    for s in out["stages"]:  # few_shot `shots: fixed`: what the provider's prompt cache takes off
        if s.get("cost_usd_cached") is not None:
            console.print(f"  {s['stage']}: its prompts share their first ~{s['prefix_tokens']:,} tokens; with the "
                          f"provider's prompt cache (each later request reads them) the stage costs about "
                          f"${s['cost_usd_cached']:.4f} instead of ${s['cost_usd']:.4f} — a floor: caches "
                          f"expire, and some models cache only longer prefixes", highlight=False)
    for s in out["stages"]:  # sft/rl: how many optimizer steps the config implies, and a rough time
        if s.get("training"):
            console.print(f"  {s['training']['text']}", highlight=False)
            if s["training"].get("warning"):
                console.print(f"  [yellow]warn[/yellow] long_training: {s['training']['warning']}", highlight=False)

    from ladder.estimate import duration

    for s in out["stages"]:  # API models with `rate_limit:`: the wall time the limit allows at best
        if s.get("rate_limit"):
            r = s["rate_limit"]
            limits = ", ".join(f"{v:,.0f} {k}/min" for k, v in (("requests", r["requests_per_minute"]),
                                                                ("tokens", r["tokens_per_minute"])) if v)
            console.print(f"  {s['stage']}: at its rate_limit ({limits}) the {r['requests']:,} requests "
                          f"({r['tokens']:,} tokens with max output) take at least {duration(r['seconds'])} "
                          f"({r['bound']} bound)", highlight=False)
    p = out["power"]
    if p["n"]:
        console.print(f"  power: with n={p['n']} paired examples, two rungs must differ by ±{p['mde']:.3f} to be "
                      f"detected at 80% power (two-sided α=0.05), assuming per-example differences with sd "
                      f"{p['assumed_sd']:g} ({p['assumption']}); n=1000 gives ±{p['mde_at_1000']:.3f}",
                      highlight=False)


def _plan_table(width: int):
    """The plan's empty table, fitted to `width`: stage names are never cut (few_shot and
    few_shot_max must stay distinguishable). Below 110 columns the vertical rules go and the long
    headers take two lines; a long model name folds rather than a stage name or a number."""
    from rich import box
    from rich.table import Table

    narrow = width < 110
    table = Table(title_justify="left", **(dict(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                                                collapse_padding=True) if narrow else {}))
    for col in ("stage", "model", "examples", "samples", "prompt tokens", "max output tokens", "cost $",
                "batch cost $"):
        head = {"prompt tokens": "prompt\ntokens", "max output tokens": "max out\ntokens",
                "batch cost $": "batch\ncost $"}.get(col, col) if narrow else col
        table.add_column(head, justify="left" if col in ("stage", "model") else "right", no_wrap=col != "model",
                         overflow="fold")
    return table


def _planned_power(n: int) -> dict:
    """The MDE a planned subsample gives under the stated assumption (ladder/power.py)."""
    from ladder.power import PLANNING_SD, mde

    return {"n": n, "assumed_sd": PLANNING_SD, "mde": mde(PLANNING_SD, n) if n else None,
            "mde_at_1000": mde(PLANNING_SD, 1000),
            "assumption": "a 0/1 metric where a quarter of the examples change outcome between the rungs"}


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
    from ladder.climb import climb as run_climb
    from ladder.climb import print_climb
    from ladder.config import load_experiment
    from ladder.variants import run_main

    done = run_main(config, set or [], only, variant, climb=dict(target=target, by=by, until=until))
    if done is not None:  # each variant climbs on its own; exit 3 unless every one reached the target
        _log(done[1], "climb", set or [], "; ".join(f"{name}: {record.outcome}"
                                                    for name, (record, _) in done[0].items()))
        for name, (record, results) in done[0].items():
            print(f"variant {name}:")
            print_climb(record)
            _unmeasured(results, done[1] / "variants" / name)
        if not all(record.reached for record, _ in done[0].values()):
            raise typer.Exit(3)
        return
    exp = load_experiment(config, set or [])
    record, results = run_climb(exp, target=target, by=by, until=until, only=only)
    print_climb(record)
    _show(exp.results_path, f"{exp.config.name}  ({exp.results_path})", wide=wide)
    _log(exp.results_path, "climb", set or [], record.outcome)
    _unmeasured(results, exp.results_path)
    if not record.reached:
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
