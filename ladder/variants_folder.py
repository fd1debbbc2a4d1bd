"""Reading a variants experiment's folder back whole: what `ladder compare`, `report`, `atlas`,
`log` and `ladder.load` do with results/<exp>/ when the YAML had `variants:` / `sweep:` / `models:`.

    results/<exp>/summary.csv          the combined table (a `variant` column, diff_base_*, best)
    results/<exp>/variants.json        {"baseline": ..., "variants": [every variant, in order]}
    results/<exp>/variants/<variant>/  an ordinary experiment folder per variant

Each variant folder is read as the experiment it is (its own table, Δ zero_shot, next steps);
views that show every variant at once label a row `<variant>/<stage>`. A folder none of whose
variants finished a stage is "nothing measured" (exit 1), never an empty table.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ladder.errors import NothingMeasured
from ladder.store import read_json


def combined_info(folder: Path) -> tuple[list[str], str] | None:
    """(variant names in order, baseline) when `folder` is a variants experiment's combined
    folder, else None. Folders written before variants.json existed: the summary's order, the
    first variant as baseline (the default)."""
    folder = Path(folder)
    if not (folder / "variants").is_dir() or not (folder / "summary.csv").exists():
        return None
    if (folder / "variants.json").exists():
        info = read_json(folder / "variants.json")
        return list(info["variants"]), info["baseline"]
    with open(folder / "summary.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "variant" not in (reader.fieldnames or []):  # a plain experiment with a stage called "variants"
            return None
        rows = list(reader)
    names = list(dict.fromkeys(r["variant"] for r in rows))
    names += [p.name for p in sorted((folder / "variants").iterdir()) if p.is_dir() and p.name not in names]
    return (names, names[0]) if names else None


def variant_of(folder: Path) -> str | None:
    """The variant's name when `folder` is one variant's folder (results/<exp>/variants/<name>)."""
    folder = Path(folder).resolve()
    return folder.name if folder.parent.name == "variants" and combined_info(folder.parent.parent) else None


def finished(folder: Path, names: list[str]) -> list[str]:
    """The variants with a summary.csv under folder/variants/, in order."""
    return [n for n in names if (folder / "variants" / n / "summary.csv").exists()]


def nothing(folder: Path, what: str) -> NothingMeasured:
    return NothingMeasured(f"no variant has a finished stage ({what})", where=str(folder),
                           fix="run the experiment first (`ladder run EXP.yaml`, or one variant with --variant); "
                               "a stage that scored no example shows in its variant's own folder")


def rows(folder: Path) -> tuple[list[dict[str, Any]], str]:
    """The combined table's rows recomputed from the variants' results, and the baseline; raises
    NothingMeasured when no variant finished a stage."""
    from ladder.variants import combined_rows

    names, baseline = combined_info(folder)
    out = combined_rows(folder, names, baseline)
    if not out:
        raise nothing(folder, "0 stages in summary.csv")
    return out, baseline


def flat_evidence(folder: Path):
    """Every variant's stage results in one Evidence, each labelled `<variant>/<stage>`, its folder
    results/<exp>/variants so `ev.folder / r.stage / r.run_id` is the run's folder. For views that
    list stages (samples, warnings, curves); paired differences come from each variant's own
    Evidence (`rows`), never across variants."""
    from dataclasses import replace

    from ladder.evidence import Evidence

    names, baseline = combined_info(folder)
    results, config = [], {}
    for name in finished(folder, names):
        ev = Evidence.load(folder / "variants" / name)
        results += [replace(r, stage=f"{name}/{r.stage}") for r in ev.results]
        if name == baseline or not config:
            config = ev.config
    return Evidence(folder / "variants", results, config)


def steps(folder: Path) -> list:
    """Each variant's next steps, said of that variant."""
    from ladder.advice import Step, next_steps
    from ladder.evidence import Evidence

    names, _ = combined_info(folder)
    return [Step(s.rule, f"{name}: {s.text}") for name in finished(folder, names)
            for s in next_steps(Evidence.load(folder / "variants" / name))]


def markdown(table: list[dict[str, Any]], baseline: str) -> str:
    """The combined table as markdown (LOG.md's entry for a variants run)."""
    from ladder.table import _value, diff_text, stage_label

    head = ["stage", "variant", "metric", "value [95% CI]", "n", "Δ zero_shot [95% CI]", "Δ baseline [95% CI]",
            "MDE", "p (Holm)", "flags"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        mde, p = r.get("diff_base_mde"), r.get("diff_base_p_holm") or r.get("diff_base_p")
        lines.append("| " + " | ".join([
            stage_label(r), ("★ " if r.get("best") is True else "") + r["variant"], str(r["metric"]), _value(r),
            str(r["n"]), diff_text(r, "diff_zero"),
            "(baseline)" if r["variant"] == baseline else "identical outputs"
            if r.get("diff_base_mde") == 0 and r.get("diff_base") == 0 else diff_text(r, "diff_base"),
            "" if mde in ("", None) else f"±{float(mde):.3f}", "" if p in ("", None) else f"{float(p):.3g}",
            str(r.get("flags", ""))]) + " |")
    return "\n".join(lines) + "\n"


