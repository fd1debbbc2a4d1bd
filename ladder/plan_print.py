"""What `ladder check` prints: the plan (guards, reachable servers, a table of examples, tokens
and cost per stage, notes) and the planned subsample's power. ladder/commands.py makes the plan;
this module only shows it.
"""

from __future__ import annotations


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
    rows = [s for s in out["stages"] if "skipped" not in s and "no_estimate" not in s]
    for s in out["stages"]:
        if "skipped" in s:
            console.print(f"  {s['stage']}: skipped ({s['skipped']})", highlight=False)
        elif "no_estimate" in s:  # a stage that implements only run(): nothing to count
            console.print(f"  {s['stage']}: no estimate ({s['no_estimate']})", highlight=False)
    total = {"samples": 0, "prompt": 0, "output": 0, "paid": 0.0, "standard": 0.0, "batch": 0.0}
    for i, s in enumerate(rows):
        # Both prices: the list price and the batch API's (model.batch: true); * marks the one paid.
        batch = s.get("cost_usd_batch")
        sc = s.get("scorer") or {}
        scorer = sc.get("cost_usd", 0.0)  # what the scorer pays (its own batch price on batch: true)
        standard = s.get("cost_usd_standard", s["cost_usd"] - scorer) + sc.get("cost_usd_standard", scorer)
        table.add_row(s["stage"], s["model"], str(s["examples"]), str(s["samples"]), f"{s['prompt_tokens']:,}",
                      f"{s['max_output_tokens']:,}", f"{standard:.4f}" + ("" if s.get("batch") else "*"),
                      "—" if batch is None else f"{batch + scorer:.4f}" + ("*" if s.get("batch") else ""),
                      end_section=i == len(rows) - 1)
        for key, value in (("samples", s["samples"]), ("prompt", s["prompt_tokens"]), ("output", s["max_output_tokens"]),
                           ("paid", s["cost_usd"]), ("standard", standard),
                           ("batch", standard if batch is None else batch + scorer)):
            total[key] += value
    if len(rows) > 1:  # the whole plan; a stage with no batch price counts at its standard price in the batch total
        batched = [bool(s.get("batch")) for s in rows]
        table.add_row("TOTAL", "", "", f"{total['samples']:,}", f"{total['prompt']:,}", f"{total['output']:,}",
                      f"{total['standard']:.4f}" + ("" if any(batched) else "*"),
                      "—" if all(s.get("cost_usd_batch") is None for s in rows)
                      else f"{total['batch']:.4f}" + ("*" if all(batched) else ""), style="bold")
    console.print(table)
    console.print("  * what the run pays; batch cost: with model.batch: true (the provider's batch API, "
                  "results within 24 h)", highlight=False)
    if len(rows) > 1 and len({bool(s.get("batch")) for s in rows}) > 1:  # some stages batched, some not
        console.print(f"  the run pays ${total['paid']:.4f} in all", highlight=False)
    for s in out["stages"]:
        if s.get("scorer"):
            sc = s["scorer"]
            console.print(f"  {s['stage']}: tokens and cost $ include up to {sc['calls']:,} {sc['scorer']} scorer calls "
                          f"({sc['prompt_tokens']:,} prompt, {sc['max_output_tokens']:,} max output tokens, "
                          f"${sc['cost_usd']:.4f})", highlight=False)
    for s in out["stages"]:  # a stage that asks more than once (Stage.plan): every pass is in its numbers
        if s.get("passes"):
            console.print(f"  {s['stage']}: {s['passes']} passes of model calls ({s['samples']:,} samples in all); "
                          f"prompt tokens count each earlier answer at max_tokens", highlight=False)
    for s in out["stages"]:  # few_shot `shots: fixed`: what the provider's prompt cache takes off
        # Only when it changes the figure as shown: "$0.0012 instead of $0.0012" says nothing.
        if s.get("cost_usd_cached") is not None and f"{s['cost_usd_cached']:.4f}" != f"{s['cost_usd']:.4f}":
            console.print(f"  {s['stage']}: its prompts share their first ~{s['prefix_tokens']:,} tokens; with the "
                          f"provider's prompt cache (each later request reads them) the stage costs about "
                          f"${s['cost_usd_cached']:.4f} instead of ${s['cost_usd']:.4f} — a floor: caches "
                          f"expire, and some models cache only longer prefixes", highlight=False)
    for s in out["stages"]:  # sft/rl: how many optimizer steps the config implies, and a rough time
        if s.get("fine_tuning"):
            console.print(f"  {s['fine_tuning']['text']}", highlight=False)
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
