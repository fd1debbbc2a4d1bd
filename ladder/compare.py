"""`ladder compare results/a results/b ...`: stages of different experiments on the same examples.

Examples are paired by content, not by row: manifest.json records, beside each subsample id, a
digest of the example's fields, target and choices (`Example.content`), so the same question
pairs up whatever row it sits in and whatever id its experiment gave it (a default id is the row
position). Each later folder is compared with the first: Δ = later − first, per stage of the same
name (or the pairs `--stage A:B` names: A of the first, B of the later), paired on the examples
both scored, with a 95% t interval and the MDE at 80% power (ladder/power.py).

With no example in common the comparison is refused (it would not be paired); `--unpaired`
compares the two as independent samples instead — the difference of the means with a Welch
interval from the two standard errors, always wider — and the output says so on every row.
Results measured with different metrics are never compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.errors import LadderError
from ladder.evidence import example_scores
from ladder.stats import num, paired_diff, t95
from ladder.store import read_json
from ladder.types import MetricValue


@dataclass
class Side:
    """One experiment's results: its table rows by label and each example id's content digest."""

    folder: Path
    rows: dict[str, dict[str, Any]]
    content: dict[str, str] | None
    """Example id → content digest (None: not recorded, which only an unpaired comparison accepts)."""
    metric: dict[str, Any] | None = None
    duplicates: set[str] = field(default_factory=set)

    def scores(self, label: str) -> dict[str, float]:
        """content digest → score for one row; examples whose content occurs twice in the
        experiment are left out (which of the two is meant would be a guess)."""
        row = self.rows[label]
        out = {}
        for ex_id, score in example_scores(samples_path(self.folder, row)).items():
            key = self.content.get(ex_id) if self.content is not None else ex_id  # None: unpaired only
            if key is not None and key not in self.duplicates:
                out[key] = score
        return out


def samples_path(folder: Path, row: dict[str, Any]) -> Path:
    """A row's samples.jsonl: <stage>/<run_id>/, or under its variant's folder when it has one."""
    plain = folder / row["stage"] / row["run_id"] / "samples.jsonl"
    variant = row.get("variant")
    if variant and not plain.exists():  # a variants experiment: results/<exp>/variants/<variant>/
        return folder / "variants" / variant / row["stage"] / row["run_id"] / "samples.jsonl"
    return plain


def label(row: dict[str, Any]) -> str:
    """A row's name in comparisons: the stage, prefixed by its variant when the table has one."""
    return f"{row['variant']}/{row['stage']}" if row.get("variant") else row["stage"]


def load_side(folder: Path, unpaired: bool = False) -> Side:
    import yaml

    from ladder.table import read_summary

    if not (folder / "summary.csv").exists():
        raise LadderError("no summary.csv here", where=str(folder),
                          fix="pass experiment folders such as results/quickstart, after `ladder run`")
    from ladder.variants_folder import combined_info, finished

    info = combined_info(folder)
    if info and finished(folder, info[0]):  # every variant has the same subsample: read the first's
        folder_m = folder / "variants" / finished(folder, info[0])[0]
    else:
        folder_m = folder
    manifest = read_json(folder_m / "manifest.json") if (folder_m / "manifest.json").exists() else {}
    sub = manifest.get("subsample") or {}
    if "content" not in sub and unpaired:
        content = None
    elif "content" not in sub:
        raise LadderError("manifest.json does not record the examples' contents (results written by an older "
                          "ladder), so its examples cannot be matched with another experiment's",
                          where=str(folder / "manifest.json"),
                          fix="run the same `ladder run` command again: finished stages are reused and the "
                              "manifest gains the contents")
    else:
        content = dict(zip(map(str, sub["ids"]), sub["content"]))
    seen: set[str] = set()
    dups = {c for c in (content or {}).values() if c in seen or seen.add(c)}
    cfg = yaml.safe_load((folder_m / "experiment.yaml").read_text()) if (folder_m / "experiment.yaml").exists() else {}
    return Side(folder, {label(r): r for r in read_summary(folder)}, content, (cfg or {}).get("metric"), dups)


@dataclass
class Pair:
    first: str
    later: str
    a: dict[str, Any]
    b: dict[str, Any]
    diff: MetricValue
    paired: bool
    unmatched: tuple[int, int] = (0, 0)
    """Examples of the first / later row with no counterpart in the other (paired only)."""


def unpaired_diff(a: list[float], b: list[float]) -> MetricValue:
    """mean(b) − mean(a) for independent samples, with a Welch-style 95% interval:
    ± t · √(s_a²/n_a + s_b²/n_b), t at the smaller sample's degrees of freedom (conservative)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return MetricValue(float("nan"), float("nan"), float("nan"), 0)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    half = t95(min(na, nb) - 1) * math.sqrt(va / na + vb / nb)
    return MetricValue(mb - ma, mb - ma - half, mb - ma + half, min(na, nb))


def _pairs_wanted(first: Side, later: Side, stages: list[str] | None) -> list[tuple[str, str]]:
    if stages:
        out = []
        for spec in stages:
            a, _, b = spec.partition(":")
            b = b or a
            for name, side in ((a, first), (b, later)):
                if name not in side.rows:
                    raise LadderError(f"--stage {spec}: {side.folder} has no stage '{name}'", field="--stage",
                                      fix=f"use one of: {', '.join(side.rows)}")
            out.append((a, b))
        return out
    common = [name for name in first.rows if name in later.rows]
    if not common:
        raise LadderError(f"{first.folder} and {later.folder} have no stage name in common "
                          f"({', '.join(first.rows)} vs {', '.join(later.rows)})", field="--stage",
                          fix="name the pairs to compare: --stage FIRST_STAGE:LATER_STAGE")
    return common


def _check_metrics(first: Side, later: Side, pairs: list[tuple[str, str]]) -> None:
    for a, b in pairs:
        ma, mb = first.rows[a]["metric"], later.rows[b]["metric"]
        if ma != mb:
            raise LadderError(f"{a} of {first.folder} is measured with metric '{ma}' and {b} of {later.folder} "
                              f"with '{mb}': a difference between two metrics means nothing",
                              field="metric", fix="compare results scored with the same metric (re-run one "
                                                  "experiment with the other's `metric:` section)")
    if first.metric and later.metric and first.metric != later.metric:
        keys = sorted(k for k in {*first.metric, *later.metric} if first.metric.get(k) != later.metric.get(k))
        raise LadderError(f"the two experiments' metric sections differ ({', '.join(f'metric.{k}' for k in keys)}: "
                          f"{first.metric} vs {later.metric}), so the same metric name scores differently",
                          where=f"{first.folder}/experiment.yaml, {later.folder}/experiment.yaml", field="metric",
                          fix="compare results scored with the same metric settings")


def compare(folders: list[Path], stages: list[str] | None = None, unpaired: bool = False) -> list[tuple[Side, list[Pair]]]:
    """Each later folder against the first: one Pair per compared stage."""
    first = load_side(folders[0], unpaired)
    out = []
    for folder in folders[1:]:
        later = load_side(folder, unpaired)
        wanted = [p if isinstance(p, tuple) else (p, p) for p in _pairs_wanted(first, later, stages)]
        _check_metrics(first, later, wanted)
        pairs = []
        for a, b in wanted:
            sa, sb = first.scores(a), later.scores(b)
            common = [k for k in sa if k in sb]
            if unpaired:
                d = unpaired_diff(list(sa.values()), list(sb.values()))
                pairs.append(Pair(a, b, first.rows[a], later.rows[b], d, False))
                continue
            if not common:
                raise LadderError(
                    f"{a} of {first.folder} and {b} of {folder} share no example: none of the {len(sa)} examples "
                    f"scored in one has the same content (fields, target, choices) as one of the {len(sb)} in "
                    f"the other — different data, a different subsample, or edited rows — so no paired "
                    f"difference exists", field="--unpaired",
                    fix="compare experiments run on the same test data, or pass --unpaired to compare them as "
                        "independent samples (a wider, unpaired interval)")
            d = paired_diff([sb[k] for k in common], [sa[k] for k in common])
            pairs.append(Pair(a, b, first.rows[a], later.rows[b], d, True,
                              (len(sa) - len(common), len(sb) - len(common))))
        out.append((later, pairs))
    return out


def print_comparison(folders: list[Path], result: list[tuple[Side, list[Pair]]]) -> None:
    from rich.table import Table

    from ladder.power import diff_mde
    from ladder.progress import stdout_console
    from ladder.table import diff_sign

    console = stdout_console()
    first = folders[0]
    for later, pairs in result:
        unpaired = any(not p.paired for p in pairs)
        title = f"{later.folder} − {first}" + ("  [UNPAIRED: independent samples, not paired by example]"
                                              if unpaired else "  (paired by example content)")
        table = Table(title=title, title_justify="left")
        for col in ("stage", "metric", str(first), str(later.folder), "Δ [95% CI]",
                    "n unpaired" if unpaired else "n paired", "MDE (80%)", "unmatched"):
            table.add_column(col, justify="left" if col in ("stage", "metric") else "right")
        for p in pairs:
            d = p.diff
            row = {"d": d.value, "d_ci_low": d.ci_low, "d_ci_high": d.ci_high}
            style = {1: "green", -1: "red", 0: ""}[diff_sign(row, "d")] if d.n else ""
            ci = "" if math.isnan(d.ci_low) else f" [{num(d.ci_low, True)}, {num(d.ci_high, True)}]"
            text = f"{num(d.value, True)}{ci}" if d.n else "n/a"
            table.add_row(p.first if p.first == p.later else f"{p.first} → {p.later}", str(p.a["metric"]),
                          _value(p.a), _value(p.b), f"[{style}]{text}[/{style}]" if style else text,
                          str(d.n), "" if not p.paired else num(diff_mde(d)),
                          "" if not p.paired else f"{p.unmatched[0]} / {p.unmatched[1]}")
        console.print(table)
        if unpaired:
            console.print("  UNPAIRED: Δ is the difference of the two means with a Welch interval from their "
                          "standard errors, not a paired comparison; it is wider and ignores which examples "
                          "are shared.", highlight=False)
        elif any(p.unmatched != (0, 0) for p in pairs):
            console.print("  unmatched: examples scored in only one of the two (first / later), left out of "
                          "the paired difference.", highlight=False)


def _value(row: dict[str, Any]) -> str:
    if row.get("value") in ("", None):
        return "n/a"
    ci = f" [{num(row['ci_low'])}, {num(row['ci_high'])}]" if row.get("ci_low") not in ("", None) else ""
    return f"{num(row['value'])}{ci} n={row['n']}"
