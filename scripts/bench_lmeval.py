"""ladder's evaluation stage against lm-evaluation-harness's request loop, on the same examples.

    python scripts/bench_lmeval.py                       # 300 examples, 3 repeats
    python scripts/bench_lmeval.py --examples 100 --repeats 1

lm-eval lives in this script's own virtual environment (`--venv`, default .venv-lmeval at the
repository root, made with `python -m venv --system-site-packages` so it shares torch and
transformers with ladder): when `lm_eval` does not import, the script creates the venv if needed,
`pip install lm-eval==0.4.13` there, and re-runs itself with the venv's python.

The work, both sides on the same model (the shipped ladder-tiny, a local folder: lm-eval's `hf`
model type takes its path), the same 300 test examples of configs/quickstart.yaml (subsample seed
0) and the same prompt strings (ladder's chat-template rendering, read back from its samples.jsonl):

- mc: log-likelihood multiple choice over the 3 choices. ladder: a zero_shot stage with
  `metric: {type: choice_prob}` (no generation: issue 22, item 22); lm-eval: `HFLM.loglikelihood`
  on the 900 (context, choice) requests.
- gen: greedy generation, max 8 new tokens, ended at EOS. ladder: a zero_shot stage with
  `metric: choice`; lm-eval: `HFLM.generate_until` (until: EOS, max_gen_toks 8, do_sample false).

Both at batch size 32 (ladder's default). ladder's time is the stage's own `seconds` (what its table
shows: model load on first use, cache writes, scoring and the samples file included) with a fresh
results folder and call cache each repeat, so nothing is reused. lm-eval's is its request loop only
(HFLM built, model loaded, beforehand — lm-eval's ~20 s start-up is not counted). Runs alternate,
after one untimed warm-up of each; the ratio is the median over repeats of ladder ÷ lm-eval from
each back-to-back pair. The last line: `mc_ratio=<x> gen_ratio=<y> load_avg=<l>` (goal ≤ 1.1 each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LM_EVAL = "lm-eval==0.4.13"


def ensure_lm_eval(venv: Path) -> None:
    """Import lm_eval, or re-run this script under `venv`'s python (made and filled first)."""
    try:
        import lm_eval  # noqa: F401
        return
    except ImportError:
        pass
    python = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():  # already in the venv (its python is a symlink)
        raise SystemExit(f"lm_eval does not import in {venv}: {python} -m pip install {LM_EVAL}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    if subprocess.run([str(python), "-c", "import lm_eval"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", LM_EVAL], check=True)
    os.execv(str(python), [str(python), *sys.argv])


def ladder_stage(metric: dict, n: int, batch_size: int, work: Path) -> tuple[float, list[dict]]:
    """One zero_shot stage of the quickstart task on `n` examples, fresh results and cache: its
    recorded seconds and its samples.jsonl records."""
    from ladder.config import load_experiment
    from ladder.runner import run_experiment

    work.mkdir(parents=True)
    os.environ["LADDER_CACHE_DIR"] = str(work / "cache")
    sets = [f"results_dir={work / 'results'}", "stages=[{type: zero_shot}]", f"subsample.n={n}",
            f"metric={json.dumps(metric)}", f"model.batch_size={batch_size}"]
    (result,) = run_experiment(load_experiment(REPO / "configs" / "quickstart.yaml", sets))
    run = work / "results" / "quickstart" / "zero_shot" / result.run_id
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return float(result.stats["seconds"]), records


class LMEval:
    """lm-eval's HFLM on ladder-tiny's folder, loaded once."""

    def __init__(self, path: str, batch_size: int):
        from lm_eval.models.huggingface import HFLM

        self.lm = HFLM(pretrained=path, batch_size=batch_size, device="cpu", dtype="float32")

    def mc(self, contexts: list[str], choices: list[list[str]]) -> tuple[float, list[int]]:
        from lm_eval.api.instance import Instance

        reqs = [Instance("loglikelihood", doc={}, arguments=(ctx, c), idx=j)
                for ctx, cs in zip(contexts, choices) for j, c in enumerate(cs)]
        start = time.perf_counter()
        out = self.lm.loglikelihood(reqs, disable_tqdm=True)
        seconds = time.perf_counter() - start
        tops, i = [], 0
        for cs in choices:
            lls = [ll for ll, _ in out[i:i + len(cs)]]
            tops.append(lls.index(max(lls)))
            i += len(cs)
        return seconds, tops

    def gen(self, contexts: list[str], max_tokens: int) -> tuple[float, list[str]]:
        from lm_eval.api.instance import Instance

        kwargs = {"until": [], "max_gen_toks": max_tokens, "do_sample": False}
        reqs = [Instance("generate_until", doc={}, arguments=(ctx, dict(kwargs)), idx=0) for ctx in contexts]
        start = time.perf_counter()
        out = self.lm.generate_until(reqs, disable_tqdm=True)
        return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--venv", type=Path, default=REPO / ".venv-lmeval")
    args = ap.parse_args()
    ensure_lm_eval(args.venv)
    import torch

    torch.set_num_threads(1)
    from ladder.backends.hf import BUILTIN_MODELS, HFBackend, HFConfig
    from ladder.types import Message

    backend = HFBackend(HFConfig(name="ladder-tiny"))
    lm = LMEval(str(BUILTIN_MODELS["ladder-tiny"]), args.batch_size)
    mc_metric = {"type": "choice_prob", "score": "accuracy"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _, records = ladder_stage(mc_metric, args.examples, args.batch_size, root / "prompts")
        contexts = [backend.render([Message(**m) for m in r["prompt"]]) for r in records]
        choices = [["positive", "negative", "neutral"]] * len(contexts)
        # Warm-ups (untimed), and agreement: the same top choice on the same strings.
        _, top = lm.mc(contexts, choices)
        agree = sum(choices[0][t] == r["samples"][0]["extracted"] for t, r in zip(top, records))
        lm.gen(contexts[:32], 8)
        ladder_stage({"type": "choice"}, 32, args.batch_size, root / "warm")
        mc, gen = [], []
        for k in range(args.repeats):
            lad, _ = ladder_stage(mc_metric, args.examples, args.batch_size, root / f"mc{k}")
            ref, _ = lm.mc(contexts, choices)
            mc.append((lad, ref))
            lad, _ = ladder_stage({"type": "choice"}, args.examples, args.batch_size, root / f"gen{k}")
            ref, _ = lm.gen(contexts, 8)
            gen.append((lad, ref))
            print(f"repeat {k}: mc ladder {mc[-1][0]:.2f} s, lm-eval {mc[-1][1]:.2f} s; "
                  f"gen ladder {gen[-1][0]:.2f} s, lm-eval {gen[-1][1]:.2f} s", flush=True)
    import lm_eval

    print(f"{len(contexts)} examples, ladder-tiny, batch {args.batch_size}, lm-eval {lm_eval.__version__}; "
          f"top choice agrees on {agree}/{len(contexts)}")
    for name, pairs in (("mc", mc), ("gen", gen)):
        print(f"{name}: ladder median {statistics.median(a for a, _ in pairs):.2f} s, "
              f"lm-eval median {statistics.median(b for _, b in pairs):.2f} s")
    ratio = {name: statistics.median(a / b for a, b in pairs) for name, pairs in (("mc", mc), ("gen", gen))}
    load = os.getloadavg()
    print(f"mc_ratio={ratio['mc']:.3f} gen_ratio={ratio['gen']:.3f} load_avg={load[0]:.2f},{load[1]:.2f}")


if __name__ == "__main__":
    main()
