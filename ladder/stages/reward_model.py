"""reward_model: train a preference model (PM) on chosen/rejected pairs, for best_of_n and rl.

Data: JSONL (gzip too) of {"chosen": ..., "rejected": ...} pairs — the hh-rlhf format, where each
side is the whole "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript — or with a shared "prompt", or
with message lists. Transcripts become messages, and every side is rendered by the pm scorer's
own `pm_text` (ladder/scorers/pm.py) — the backbone's chat template, or a Human/Assistant
transcript with EOS without one — so training, the held-out accuracy and scoring read one format.

Training: trl RewardTrainer on the stage's model (the backbone: any local causal LM or encoder;
a one-output score head is added). The number is pairwise accuracy on held-out pairs — how often
the PM scores the chosen response above the rejected one — with its 95% CI; 50% is chance.

Use it as a scorer: `scorer: {type: pm, from_stage: reward_model, reference: "..."}` in
best_of_n, `reward: {...}` in rl. A PM's raw score means nothing across prompts, so the pm scorer
always reads it against a reference response in the same context.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ladder.errors import ConfigError, DataError
from ladder.marker import read_marker, training_finished
from ladder.progress import console
from ladder.stages import Prompt, Stage, StageContext, local_hf
from ladder.stats import mean_ci
from ladder.store import JsonlWriter, read_jsonl, write_json
from ladder.config import resolve_path
from ladder.config.schema import older_name
from ladder.training import TrainingStageConfig, draw_train, tracking_args
from ladder.training.launch import check_launcher
from ladder.training.lora import LoraSettings
from ladder.types import Extra, Guard, StageResult, Stats

OWNED_TRAINER_KEYS = {"output_dir", "learning_rate", "per_device_train_batch_size", "num_train_epochs",
                      "max_steps", "seed", "data_seed", "max_length", "logging_steps", "save_strategy",
                      "save_steps", "report_to", "disable_tqdm", "eval_strategy"}


class RewardModelConfig(TrainingStageConfig):
    type: Literal["reward_model"] = "reward_model"
    data: str | dict[str, str]
    """Preference pairs: one JSONL file (split into train and held-out test by `test_size`, seeded)
    or {train: ..., test: ...}. Paths relative to the YAML file; .jsonl.gz is read as is."""
    test_size: float = Field(0.2, gt=0, lt=1)
    """Share of a single file held out for the accuracy."""
    max_test: int | None = Field(1000, ge=1)
    """At most this many held-out pairs are scored (300–1,000 pin accuracy to about ±3–5 points)."""
    method: Literal["lora", "full"] = "full"
    """full trains every weight (right for small backbones); lora trains adapters plus the new
    score head (for billion-weight backbones)."""
    lora: LoraSettings = LoraSettings()
    """LoRA settings (method: lora)."""
    learning_rate: float | None = Field(None, gt=0)
    """Peak learning rate. Default 1e-4 full, 5e-4 LoRA — right for small backbones like
    ladder-tiny; about 1e-5 full or 1e-4 LoRA for billion-weight ones."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the training pairs (PMs overfit fast: 1 is the usual choice)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides epochs)."""
    batch_size: int = Field(16, ge=1)
    """Pairs per optimizer step (under `launch:`, split over the processes)."""
    max_length: int = Field(512, ge=8)
    """Longest side of a pair in tokens; longer pairs are left out of training and test (counted)."""
    seed: int | None = None
    """Seed of the split, the draws, initialisation and data order; defaults to the experiment seed."""
    trainer_args: dict[str, Any] = Field(default_factory=dict)
    """More trl RewardConfig keys, e.g. {center_rewards_coefficient: 0.01, warmup_steps: 10}."""
    owned_trainer_keys = OWNED_TRAINER_KEYS
    trl_configs = ("RewardConfig",)
    own_keys = "learning_rate, batch_size, epochs, max_steps, max_length, report_to"

    @model_validator(mode="before")
    @classmethod
    def _max_train_is_train_subsample(cls, data: Any) -> Any:
        # `max_train` was this stage's own name for what every training stage now calls
        # `train_subsample`; configs that use it still work (null meant every pair: "all").
        return older_name(data, "max_train", "train_subsample", lambda v: "all" if v is None else v)


class RewardModel(Stage):
    Config = RewardModelConfig
    produces_model = False  # not a policy: a PM, named by a scorer's `from_stage:`
    produces_reward_model = True
    family = "training"
    evaluates_test_subsample = False  # its n is held-out preference pairs

    @classmethod
    def reads(cls, cfg: RewardModelConfig) -> list[str]:
        return [cfg.data] if isinstance(cfg.data, str) else list(cfg.data.values())

    @staticmethod
    def check_inputs(cfg: RewardModelConfig, task: Any) -> None:
        """Called by the runner before anything is written: the pair files exist and parse."""
        files = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data.values())
        for f in files:  # relative paths are read from the YAML file's folder, as the task's data
            read_pairs(resolve_path(f, getattr(task, "base_dir", Path.cwd())), f"stages.{cfg.name}.data")

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        return [], []  # it asks the policy nothing

    def run(self, ctx: StageContext) -> StageResult:
        cfg: RewardModelConfig = self.config
        field = f"stages.{ctx.stage.name}"
        local_hf(ctx, "the reward_model stage")
        check_launcher(cfg.launch, f"{field}.launch")
        started = time.perf_counter()
        seed = ctx.experiment.seed_for(cfg.seed)
        train, test = self.pairs(ctx, seed)
        train, drawn, subsampled = draw_train(train, cfg, seed, lambda p: [p["chosen"], p["rejected"]],
                                              "training pairs")
        chat = ctx.backend.uses_chat_template
        tok = ctx.backend.tokenizer
        # Never past the backbone's context window: positions beyond it were never trained.
        max_length = min(cfg.max_length, ctx.backend.context_window)
        train, dropped_train = fit(train, chat, tok, max_length)
        test, dropped_test = fit(test, chat, tok, max_length)
        if not train or not test:
            raise DataError(f"no {'training' if not train else 'held-out'} pairs left under max_length "
                            f"{max_length}", field=f"{field}.max_length",
                            fix="raise max_length (up to the backbone's context window), or give shorter pairs")
        model_dir = (ctx.run_dir / "model").resolve()
        if training_finished(model_dir):
            console.print(f"[bold]{ctx.stage.name}[/bold] reward model trained earlier ({model_dir}): scoring it")
        else:
            spec = self.spec(ctx, seed, max_length)
            rows = [{"chosen": p["chosen"], "rejected": p["rejected"]} for p in train]
            if cfg.launch is None:
                from ladder.training.reward_local import train as rm_train

                write_json(ctx.run_dir / "reward_spec.json", spec.model_dump(mode="json"))
                rm_train(spec, rows)
            else:  # the ranks read the pairs and the spec from the run folder
                from ladder.training.launch import run_launched

                spec = spec.model_copy(update={"pairs_file": str(ctx.run_dir / "reward_pairs.json")})
                write_json(ctx.run_dir / "reward_pairs.json", rows)
                write_json(ctx.run_dir / "reward_spec.json", spec.model_dump(mode="json"))
                run_launched(cfg.launch, "ladder.training.reward_local", ctx.run_dir / "reward_spec.json",
                             f"{field}.launch", label=f"[bold]{ctx.stage.name}[/bold] training")
        summary = read_marker(model_dir)
        from ladder.scorers.pm import record_format

        record_format(model_dir, chat)  # the pm scorer renders as this PM was trained
        records = score_pairs(ctx.run_dir / "samples.jsonl", str(model_dir), test, chat, max_length)
        metric = mean_ci([r["score"] for r in records])
        calib = calibration(records)
        guards = [accuracy_guard(metric), calibration_guard(calib), *subsampled]
        if dropped_train or dropped_test:
            guards.append(Guard("max_length", "info", f"{dropped_train} training and {dropped_test} held-out pairs "
                                f"are longer than max_length {max_length} tokens and were left out",
                                float(dropped_train + dropped_test)))
        guards.append(Guard("pm_reference", "info", f"use it as `{{type: pm, from_stage: {ctx.stage.name}, "
                            f"reference: ...}}`: its raw scores only mean something against a reference "
                            f"response in the same context"))
        log = summary.get("log", [])
        margins = [r["chosen_reward"] - r["rejected_reward"] for r in records]
        return StageResult(
            stage=ctx.stage.name, type=ctx.stage.type, run_id=ctx.run_id, metric_name="pairwise_accuracy",
            metric=metric, guards=guards,
            stats=Stats(examples=len(records), samples=0, errors=0, train_pairs=len(train), test_pairs=len(test),
                        prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
                        seconds=round(time.perf_counter() - started, 3)),
            extra=Extra(reward_model={"name": str(model_dir)}, train_subsample=drawn,
                        training={k: v for k, v in summary.items() if k != "log"},
                        mean_margin=sum(margins) / len(margins), calibration=calib,
                        curves={"rm_train": {"x": [p["step"] for p in log],
                                             "y": {"train loss": [p["loss"] for p in log],
                                                   "train accuracy": [p.get("accuracy") for p in log]},
                                             "xlabel": "step", "ylabel": "loss / accuracy",
                                             "hlines": {"chance loss log 2": math.log(2)}}}))

    def pairs(self, ctx: StageContext, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        cfg: RewardModelConfig = self.config
        field = f"stages.{ctx.stage.name}.data"
        base = ctx.experiment.base_dir
        if isinstance(cfg.data, str):
            rows = read_pairs(resolve_path(cfg.data, base), field)
            random.Random(seed).shuffle(rows)
            cut = max(1, round(len(rows) * cfg.test_size))
            test, train = rows[:cut], rows[cut:]
        else:
            unknown = sorted(set(cfg.data) - {"train", "test"})
            if unknown or "train" not in cfg.data or "test" not in cfg.data:
                raise ConfigError("data must be one file or {train: ..., test: ...}", field=field,
                                  fix="name the train and test files of the pairs")
            train = read_pairs(resolve_path(cfg.data["train"], base), field + ".train")
            test = read_pairs(resolve_path(cfg.data["test"], base), field + ".test")
        if cfg.max_test and len(test) > cfg.max_test:
            test = random.Random(seed + 1).sample(test, cfg.max_test)
        if not train:
            raise DataError("no training pairs", field=field, fix="give more pairs, or lower test_size")
        return train, test

    def spec(self, ctx: StageContext, seed: int, max_length: int) -> Any:
        from ladder.training.reward_local import RewardSpec

        cfg: RewardModelConfig = self.config
        lr = cfg.learning_rate or (1e-4 if cfg.method == "full" else 5e-4)
        run = ctx.run_dir
        return RewardSpec(
            model=ctx.backend.config.model_dump(mode="json"), method=cfg.method,
            lora=cfg.lora.peft_kwargs() if cfg.method == "lora" else None,
            trainer={"learning_rate": lr, "per_device_train_batch_size": cfg.batch_size, "num_train_epochs": cfg.epochs,
                     "max_steps": cfg.max_steps or -1, "seed": seed, "data_seed": seed, "max_length": max_length,
                     "logging_steps": 5, "save_strategy": "steps", "save_steps": 200, "save_total_limit": 2,
                     "disable_tqdm": True, **tracking_args(cfg.report_to, run), **cfg.trainer_args},
            output_dir=str(run / "checkpoints"), model_dir=str((run / "model").resolve()),
            save_every_minutes=cfg.save_every_minutes)


# -- data ----------------------------------------------------------------------------------------


def read_pairs(path: Path, field: str) -> list[dict[str, Any]]:
    """Pairs as {"id", "chosen", "rejected"}: each side a message list, or a string when the row
    has plain text that is not a Human/Assistant transcript."""
    if not path.exists():
        raise DataError(f"preference data '{path}' does not exist", field=field,
                        fix="check the path; relative paths are read from the YAML file's folder")
    try:
        text = (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")).read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read '{path}' ({exc})", field=field, fix="give UTF-8 JSONL, optionally gzipped") from None
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append({"id": str(row.get("id", i)), **pair(row)})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            why = f"it has no '{exc.args[0]}'" if isinstance(exc, KeyError) else str(exc)
            raise DataError(f"line {i + 1} of '{path}' is not a preference pair ({why})", field=field,
                            fix='write {"chosen": ..., "rejected": ...} per line (optionally with "prompt")') from None
    return out


def pair(row: dict[str, Any]) -> dict[str, Any]:
    prompt = row.get("prompt")
    chosen, rejected = row["chosen"], row["rejected"]
    if prompt is not None:
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else messages(prompt)
        return {"chosen": prompt + _reply(chosen), "rejected": prompt + _reply(rejected)}
    if isinstance(chosen, str) and isinstance(rejected, str):
        if "\n\nAssistant:" in chosen and "\n\nAssistant:" in rejected:
            return {"chosen": transcript(chosen), "rejected": transcript(rejected)}
        return {"chosen": chosen, "rejected": rejected}
    return {"chosen": messages(chosen), "rejected": messages(rejected)}


def _reply(x: Any) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": x}] if isinstance(x, str) else messages(x)


def messages(x: Any) -> list[dict[str, str]]:
    if not isinstance(x, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str) and
                                          m.get("role") in ("system", "user", "assistant") for m in x):
        raise ValueError("expected a string or a list of {role, content} messages")
    return [{"role": m["role"], "content": m["content"]} for m in x]


def transcript(text: str) -> list[dict[str, str]]:
    """An hh-rlhf transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as chat messages."""
    parts = re.split(r"\n\n(Human|Assistant): ?", "\n\n" + text.lstrip("\n"))
    out = []
    for who, said in zip(parts[1::2], parts[2::2]):
        out.append({"role": "user" if who == "Human" else "assistant", "content": said.strip()})
    if not out or out[-1]["role"] != "assistant":
        raise ValueError("the transcript does not end with an Assistant turn")
    return out


def fit(pairs: list[dict[str, Any]], chat: bool, tokenizer: Any, max_length: int) -> tuple[list[dict[str, Any]], int]:
    """Pairs in the form the trainer takes, and those whose longer side fits max_length; plus how
    many were dropped. Every side is what `pm_text` renders — the one rendering the pm scorer and
    the held-out accuracy use too: with a chat template the messages themselves (trl renders them
    through the same template), otherwise pm_text's transcript with EOS (trl adds nothing to it)."""
    from ladder.scorers.pm import pm_text

    def side(x: Any) -> Any:
        return x if chat and not isinstance(x, str) else pm_text(x, chat, tokenizer)

    rows = [{"id": p["id"], "chosen": side(p["chosen"]), "rejected": side(p["rejected"])} for p in pairs]
    texts = [pm_text(r[k], chat, tokenizer) for r in rows for k in ("chosen", "rejected")]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []  # one batched call
    kept = [r for j, r in enumerate(rows) if max(len(ids[2 * j]), len(ids[2 * j + 1])) + 2 <= max_length]  # + BOS/EOS
    return kept, len(pairs) - len(kept)


# -- evaluation ---------------------------------------------------------------------------------


def score_pairs(path: Path, model_dir: str, test: list[dict[str, Any]], chat: bool, max_length: int) -> list[dict[str, Any]]:
    """Score both sides of every held-out pair (resuming from samples.jsonl); 1 when chosen wins.
    Through the pm scorer's own reader, so the accuracy describes exactly what the scorer reads."""
    done = {r["id"]: r for r in read_jsonl(path, repair=True)}
    todo = [p for p in test if p["id"] not in done]
    if todo:
        from ladder.scorers.classifier import SequenceModelConfig
        from ladder.scorers.pm import PMReader

        reader = PMReader(SequenceModelConfig(model=model_dir, max_length=max_length), chat=chat)
        rewards = reader.rewards([p[k] for p in todo for k in ("chosen", "rejected")])
        recs = []
        for j, p in enumerate(todo):
            c, r = rewards[2 * j], rewards[2 * j + 1]
            recs.append({"id": p["id"], "chosen_reward": c, "rejected_reward": r,
                         "score": 1.0 if c > r else 0.5 if c == r else 0.0})
        with JsonlWriter(path) as out:
            out.write(recs)
        done.update((r["id"], r) for r in recs)
    return [done[p["id"]] for p in test]


CALIBRATION_BINS = 5
"""Equal-width bins of the PM's confidence max(p, 1 − p) over [0.5, 1] for the ECE."""


def calibration(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How far the probability under the PM is from how often it is right, on held-out pairs.

    Per pair the PM prefers the side with the higher reward, with probability p = σ(|Δ|) — its
    confidence, in [0.5, 1); it is right when that side is the chosen one (a tie: half right, at
    0.5). Reported: mean confidence beside accuracy, and the ECE — the pair-weighted mean of
    |accuracy − mean confidence| over CALIBRATION_BINS equal-width confidence bins on [0.5, 1]."""
    from ladder.scorers.classifier import sigmoid

    pairs = [(sigmoid(abs(r["chosen_reward"] - r["rejected_reward"])), r["score"]) for r in records]
    n = len(pairs)
    bins = []
    width = 0.5 / CALIBRATION_BINS
    for b in range(CALIBRATION_BINS):
        low, high = 0.5 + b * width, 0.5 + (b + 1) * width
        inside = [(c, a) for c, a in pairs if low <= c < high or (b == CALIBRATION_BINS - 1 and c >= high)]
        if inside:
            bins.append({"low": round(low, 3), "high": round(high, 3), "n": len(inside),
                         "confidence": sum(c for c, _ in inside) / len(inside),
                         "accuracy": sum(a for _, a in inside) / len(inside)})
    return {"pairs": n, "mean_confidence": sum(c for c, _ in pairs) / n if n else None,
            "accuracy": sum(a for _, a in pairs) / n if n else None,
            "ece": sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins) if n else None,
            "bins": bins, "binning": f"{CALIBRATION_BINS} equal-width bins of confidence max(p, 1-p) on [0.5, 1]"}


def calibration_guard(c: dict[str, Any]) -> Guard:
    if not c["pairs"]:
        return Guard("pm_calibration", "info", "no held-out pairs to measure calibration on")
    gap = c["mean_confidence"] - c["accuracy"]
    msg = (f"on {c['pairs']} held-out pairs the PM's mean confidence is {c['mean_confidence']:.3f} and it is "
           f"right {c['accuracy']:.3f} of the time (ECE {c['ece']:.3f} over {CALIBRATION_BINS} equal-width "
           f"confidence bins on [0.5, 1])")
    if abs(gap) > 0.05:
        return Guard("pm_calibration", "warn", msg + f": its probabilities are {'over' if gap > 0 else 'under'}"
                     "confident, so read a pm score as the probability under the PM, not as a chance of "
                     "being preferred", c["ece"])
    return Guard("pm_calibration", "info", msg, c["ece"])


def accuracy_guard(m: Any) -> Guard:
    if m.ci_low > 0.5:
        return Guard("beats_chance", "ok", f"pairwise accuracy {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}] "
                     f"is above chance (0.5) on {m.n} held-out pairs", m.value)
    return Guard("beats_chance", "warn", f"pairwise accuracy {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}] on "
                 f"{m.n} held-out pairs is not clearly above chance (0.5): this PM cannot rank responses; "
                 f"train on more pairs or longer, or use a larger backbone", m.value)
