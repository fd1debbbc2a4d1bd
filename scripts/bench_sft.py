"""The sft stage against raw trl `SFTTrainer` doing the same training and evaluation (targets: ≤ 1.1
for the same work, ≤ 1.2 with the default curves).

    python scripts/bench_sft.py                     # the quickstart's sft rung: ladder-tiny, full, 2,000 rows
    python scripts/bench_sft.py --method lora --repeats 3

Both sides, each in its own fresh Python process with torch, transformers, trl and peft imported
before the clock starts (one torch thread, CPU):

ladder: an experiment with the quickstart's task, a zero_shot stage and one sft stage (`method:
full` as in configs/quickstart.yaml, or `--method lora`), run by `ladder.runner.run_experiment`
with fresh results and cache folders. zero_shot runs first, as in the quickstart, and is not timed:
it puts the base model's greedy answers in the cache, which the sft curve's step 0 reads
(`--sft-alone` leaves it out: step 0 then generates its answers). Timed: the sft stage's own
`seconds` (the step-0 point, training, checkpoints, the merged model, the test evaluation, the
guards and the curve's last point) and its CPU time, and inside it, by wrapping the functions, the
training call (`ladder.training.sft_local.train`) and the evaluation passes during training
(`Trainer.evaluate`: test loss, plus the curve's greedy samples and choice loss at the points
between step 0 and the end). Run twice: with the default `curves: true` (points at step 0, every
`eval_steps` and the end, on a seeded draw of 100 of the 300 test examples) and with `curves:
false` (no evaluation during training: the same work as raw).

raw: what a user writes with trl alone, with ladder's settings: the same 2,000 train rows rendered
the same way (conversational prompt = [system instruction, "Review: {text}"], completion = the
label; checked equal to ladder's train.jsonl), the same model, `SFTConfig` with the same learning
rate, batch size, epochs, seed, max_length, completion-only loss, logging steps, fp32, no gradient
checkpointing (trl's default is on; ladder turns it off), the device as ladder picks it, and no
checkpoints; `trainer.train()`, `trainer.save_model()`. Then the same final evaluation ladder does:
load the saved model, greedy answers (max_tokens 8) to the same 300 test prompts, batched 32 and
sorted by length, scored by choice accuracy, and the log-probability of each of the 3 answer
choices (ladder's chance-loss guard; one forward pass per prompt, the choices being one token each,
as ladder's hf backend does too).

Ratios (ladder ÷ raw wall time; < 1 means ladder is faster):
- same work: ladder's whole stage with `curves: false` ÷ raw training + evaluation.  ← last line
- training: ladder's training call with `curves: false` ÷ raw training (set-up, train, save).
- default: ladder's whole stage with its defaults (curves on) ÷ raw training + evaluation. The
  curves are work raw does not do — the test loss at every point, greedy samples and choice loss at
  the points between step 0 and the end — so this one is not like for like, but it is what a user
  pays; the time the evaluations during training take is printed beside it.
Each is the median over `--repeats` rounds (the order rotates each round), with the load average;
the same ratios in CPU time follow (less disturbed by other load on a shared machine). The last
line is `ratio_to_raw=<x> default_ratio=<y> default_ratio_cpu=<z> load_avg=<l>`: the same-work
ratio, and the default-curves ratio in wall and CPU time.
"""

from __future__ import annotations

import argparse
import dataclasses
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

INSTRUCTION = "Classify the sentiment of the review. Answer with exactly one word: positive, negative or neutral."
CHOICES = ["positive", "negative", "neutral"]
DATA = REPO / "data" / "sentiment"


def settings(method: str) -> dict:
    """ladder's defaults for the local route (ladder/stages/sft.py train_spec), for 2,000 rows."""
    batch, rows = 16, 2000
    steps = -(-rows // batch)
    return {"learning_rate": 1e-3 if method == "full" else 5e-3, "per_device_train_batch_size": batch,
            "num_train_epochs": 1.0, "seed": 0, "data_seed": 0, "max_length": 512,  # min(1024, context 512)
            "completion_only_loss": True, "logging_steps": max(1, steps // 25)}


# -- workers (each run in its own process) ---------------------------------------------------------


def import_training_stack() -> None:
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def ladder_worker(folder: Path, method: str, curves: bool, test_n: int, zero_shot: bool = True,
                  curve_examples: str | None = None) -> dict:
    import_training_stack()
    import transformers

    import ladder.training.sft_local as sft_local
    from ladder.config import load_experiment
    from ladder.progress import console
    from ladder.runner import run_experiment
    from ladder.stages.sft import SFT

    console.quiet = True
    timed: dict[str, float] = {"train": 0.0, "evaluate": 0.0, "train_cpu": 0.0, "stage": 0.0}

    def timing(name, fn):
        def wrapper(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                timed[name] += time.perf_counter() - start
                timed[name + "_cpu"] = timed.get(name + "_cpu", 0.0) + time.process_time() - cpu
        return wrapper

    sft_local.train = timing("train", sft_local.train)
    transformers.Trainer.evaluate = timing("evaluate", transformers.Trainer.evaluate)
    SFT.run = timing("stage", SFT.run)  # the sft stage alone (zero_shot before it is not timed)
    exp = {"name": "bench_sft", "results_dir": str(folder / "results"), "cache_dir": str(folder / "cache"),
           "task": {"data": {"train": str(DATA / "train.jsonl"), "test": str(DATA / "test.jsonl")},
                    "target": "label", "instruction": INSTRUCTION, "template": "Review: {text}", "choices": CHOICES},
           "metric": "choice", "model": {"backend": "hf", "name": "ladder-tiny"},
           "generation": {"max_tokens": 8, "temperature": 0}, "subsample": {"n": test_n},
           "stages": [{"type": "zero_shot"}] * zero_shot + [{"type": "sft", "method": method, "curves": curves}]}
    if curve_examples:
        exp["stages"][-1]["curve_examples"] = curve_examples if curve_examples == "all" else int(curve_examples)
    path = folder / "exp.yaml"
    path.write_text(json.dumps(exp))
    result = run_experiment(load_experiment(path, []))[-1]
    run_dir = folder / "results" / "bench_sft" / "sft" / result.run_id
    return {"stage": result.stats["seconds"], "stage_cpu": timed["stage_cpu"], "train": timed["train"],
            "train_cpu": timed["train_cpu"], "evaluate": timed["evaluate"],
            "metric": result.metric.value, "steps": result.extra["training"]["steps"],
            "evaluate_cpu": timed.get("evaluate_cpu", 0.0),
            "train_file": str(run_dir / "train.jsonl"), "test_ids": [r["id"] for r in read_rows(run_dir / "samples.jsonl")]}


def test_ids(n: int) -> list[str]:
    """ladder's test subsample (seed 0) of the sentiment test split: what both sides evaluate."""
    import random

    count = len(read_rows(DATA / "test.jsonl"))
    keep = range(count) if n >= count else sorted(random.Random(0).sample(range(count), n))
    return [f"test-{i}" for i in keep]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def raw_rows() -> list[dict]:
    return [{"prompt": [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": f"Review: {r['text']}"}],
             "completion": [{"role": "assistant", "content": r["label"]}]} for r in read_rows(DATA / "train.jsonl")]


def raw_worker(folder: Path, method: str, test_ids: list[str]) -> dict:
    import_training_stack()
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging
    from trl import SFTConfig, SFTTrainer

    from ladder.backends.hf import BUILTIN_MODELS

    logging.set_verbosity_error()
    path = str(BUILTIN_MODELS["ladder-tiny"])
    start, cpu = time.perf_counter(), time.process_time()
    tok = AutoTokenizer.from_pretrained(path)
    peft_config = None
    if method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    # trl turns gradient checkpointing on by default; ladder turns it off (its `gradient_checkpointing:
    # false`), so raw does too: with it on, raw trains ~15% slower here (recomputed activations).
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    no_recompute = {"activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing": False}
    config = SFTConfig(output_dir=str(folder / "out"), **settings(method), save_strategy="no", eval_strategy="no",
                       report_to="none", disable_tqdm=True, use_cpu=False, bf16=False, dataloader_pin_memory=False,
                       model_init_kwargs={"dtype": "float32"}, **no_recompute)
    trainer = SFTTrainer(model=path, args=config, processing_class=tok, train_dataset=Dataset.from_list(raw_rows()),
                         peft_config=peft_config)
    trainer.train()
    model_dir = folder / "model"
    if method == "lora":
        trainer.model.merge_and_unload().save_pretrained(str(model_dir))
    else:
        trainer.save_model(str(model_dir))
    tok.save_pretrained(str(model_dir))
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu

    # The final evaluation: greedy answers and the answer choices' log-probabilities on the test subsample.
    start, cpu = time.perf_counter(), time.process_time()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    test = read_rows(DATA / "test.jsonl")
    rows = [test[int(i.split("-")[1])] for i in test_ids]
    texts = [tok.apply_chat_template([{"role": "system", "content": INSTRUCTION},
                                      {"role": "user", "content": f"Review: {r['text']}"}],
                                     add_generation_prompt=True, tokenize=False) for r in rows]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    answers: dict[int, str] = {}
    for b in range(0, len(order), 32):
        idx = order[b:b + 32]
        enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=8, do_sample=False, temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id])
        for i, text in zip(idx, tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)):
            answers[i] = text.strip()
    accuracy = sum(answers[i] == r["label"] for i, r in enumerate(rows)) / len(rows)
    # Each choice is one token, so one forward pass per prompt gives all three log-probabilities.
    choice_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in CHOICES]
    assert all(len(c) == 1 for c in choice_ids), choice_ids
    logprobs = []
    for b in range(0, len(order), 32):
        seqs = [tok(texts[i], add_special_tokens=False)["input_ids"] for i in order[b:b + 32]]
        width = max(len(q) for q in seqs)
        ids = torch.tensor([q + [tok.pad_token_id] * (width - len(q)) for q in seqs])
        mask = torch.tensor([[1] * len(q) + [0] * (width - len(q)) for q in seqs])
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits
            last = torch.log_softmax(logits[torch.arange(len(seqs)), torch.tensor([len(q) - 1 for q in seqs])].float(), -1)
        logprobs += last[:, [c[0] for c in choice_ids]].flatten().tolist()
    eval_s, eval_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"train": train_s, "eval": eval_s, "total": train_s + eval_s, "total_cpu": train_cpu + eval_cpu,
            "train_cpu": train_cpu, "accuracy": accuracy,
            "steps": trainer.state.global_step, "choice_logprobs": len(logprobs)}


# -- the parent ---------------------------------------------------------------------------------------


def spawn(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=["full", "lora"], default="full")
    p.add_argument("--test-n", type=int, default=300, help="test subsample (the quickstart's)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sft-alone", action="store_true",
                   help="no zero_shot before sft: the curve's step 0 generates its own answers")
    p.add_argument("--curve-examples", help="the sft stage's curve_examples (a number or all; default: its default)")
    p.add_argument("--worker", choices=["ladder", "ladder-nocurves", "raw"], help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--test-ids", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        folder = Path(a.folder)
        if a.worker == "raw":
            out = raw_worker(folder, a.method, json.loads(Path(a.test_ids).read_text()))
        else:
            out = ladder_worker(folder, a.method, a.worker == "ladder", a.test_n, zero_shot=not a.sft_alone,
                                curve_examples=a.curve_examples)
        out["load"] = os.getloadavg()[0]
        print(json.dumps(out))
        return

    runs: dict[str, list[dict]] = {"ladder": [], "ladder-nocurves": [], "raw": []}
    order = list(runs)
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = Path(tmp) / "test_ids.json"
        ids_file.write_text(json.dumps(test_ids(a.test_n)))
        for rep in range(a.repeats):
            for who in order[rep % 3:] + order[:rep % 3]:
                folder = Path(tmp) / f"{who}-{rep}"
                folder.mkdir()
                r = spawn(["--worker", who, "--folder", str(folder), "--method", a.method, "--test-n", str(a.test_n),
                           "--test-ids", str(ids_file)] + ["--sft-alone"] * a.sft_alone
                          + (["--curve-examples", a.curve_examples] if a.curve_examples else []))
                runs[who].append(r)
                if who != "raw":
                    same = read_rows(Path(r["train_file"])) == raw_rows()
                    same_ids = sorted(r.pop("test_ids")) == sorted(json.loads(ids_file.read_text()))
                    print(f"round {rep + 1} {who}: stage {r['stage']:.2f}s (training call {r['train']:.2f}s, of which "
                          f"evaluations {r['evaluate']:.2f}s) metric {r['metric']:.3f} steps {r['steps']}; train rows "
                          f"{'identical to raw' if same else 'DIFFER from raw'}, test examples "
                          f"{'identical' if same_ids else 'DIFFER'}; load_avg_1min={r['load']:.2f}")
                else:
                    print(f"round {rep + 1} raw: train {r['train']:.2f}s + eval {r['eval']:.2f}s = {r['total']:.2f}s; "
                          f"accuracy {r['accuracy']:.3f} steps {r['steps']} choice log-probs {r['choice_logprobs']}; "
                          f"load_avg_1min={r['load']:.2f}")

    med = {who: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
           for who, rs in runs.items()}
    stage = med["ladder"]["stage"] / med["raw"]["total"]
    nocurves = med["ladder-nocurves"]["stage"] / med["raw"]["total"]
    training = med["ladder-nocurves"]["train"] / med["raw"]["train"]
    print(f"medians: ladder stage, curves off {med['ladder-nocurves']['stage']:.2f}s (training call "
          f"{med['ladder-nocurves']['train']:.2f}s); raw train {med['raw']['train']:.2f}s + eval {med['raw']['eval']:.2f}s "
          f"= {med['raw']['total']:.2f}s; ladder stage with defaults {med['ladder']['stage']:.2f}s, of which "
          f"evaluations during training (curves) {med['ladder']['evaluate']:.2f}s")
    load = os.getloadavg()
    print(f"method={a.method} repeats={a.repeats} cores={os.cpu_count()} torch threads={os.environ['OMP_NUM_THREADS']} "
          f"{'sft alone' if a.sft_alone else 'zero_shot first (untimed)'} "
          f"curve_examples={a.curve_examples or 'default'} "
          f"load_avg={' '.join(f'{x:.2f}' for x in load)}")
    print(f"ratios ladder/raw: same work (curves off) {nocurves:.3f}; training {training:.3f}; "
          f"default (curves on) {stage:.3f}")
    default_cpu = med["ladder"]["stage_cpu"] / med["raw"]["total_cpu"]
    print(f"the same in CPU time: same work {med['ladder-nocurves']['stage_cpu'] / med['raw']['total_cpu']:.3f}; "
          f"training {med['ladder-nocurves']['train_cpu'] / med['raw']['train_cpu']:.3f}; "
          f"default {default_cpu:.3f} (curves' evaluations during training {med['ladder']['evaluate_cpu']:.2f}s CPU)")
    print(f"default curves: {stage:.3f}x raw wall, {default_cpu:.3f}x raw CPU (target <= 1.2)")
    print(f"ratio_to_raw={nocurves:.3f} default_ratio={stage:.3f} default_ratio_cpu={default_cpu:.3f} "
          f"load_avg={load[0]:.2f}")


if __name__ == "__main__":
    main()
