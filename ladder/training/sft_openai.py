"""Supervised finetuning through the OpenAI fine-tuning API: upload, create a job, poll, hand back
the fine-tuned model's backend.

Resumable: the uploaded file's id and the job's id go into <run_dir>/openai_job.json the moment
they exist, before any waiting, so a re-run after an interruption (or a Ctrl-C during a long
job) polls the same job instead of paying for a second one.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ladder.backends.base import Backend
from ladder.errors import BackendError, DataError, LadderError
from ladder.progress import console
from ladder.store import atomic_write, read_json, write_json
from ladder.training import trained_model

JOB_FILE = "openai_job.json"
TERMINAL = ("succeeded", "failed", "cancelled")
MIN_EXAMPLES = 10  # the API rejects smaller training files


def chat_jsonl(rows: list[Any]) -> str:
    """OpenAI's chat fine-tuning format: the prompt's messages, then the answer as the assistant."""
    return "".join(json.dumps({"messages": [m.to_dict() for m in r.prompt]
                               + [{"role": "assistant", "content": r.completion}]}) + "\n" for r in rows)


def finetune(ctx: Any, cfg: Any, rows: list[Any]) -> tuple[Backend, dict[str, Any]]:
    """Run (or resume) the job; returns the fine-tuned model's backend and what metrics.json records."""
    from ladder.backends.openai import OpenAIBackend

    backend = ctx.backend
    if not isinstance(backend, OpenAIBackend):
        raise LadderError(f"the openai sft route needs an openai model, not '{backend.config.backend}'",
                          field=f"stages.{ctx.stage.name}.route", fix="use route: local for hf models")
    if len(rows) < MIN_EXAMPLES:
        raise DataError(f"{len(rows)} training examples; the OpenAI API needs at least {MIN_EXAMPLES}",
                        field=f"stages.{ctx.stage.name}.data", fix="add training examples")
    client = backend.sdk().OpenAI(api_key=backend.api_key(), base_url=backend.config.base_url,
                                  timeout=backend.config.timeout, max_retries=backend.config.max_retries)
    path = ctx.run_dir / JOB_FILE
    state: dict[str, Any] = read_json(path) if path.exists() else {}
    name = ctx.stage.name
    if "job_id" in state:
        console.print(f"[bold]{name}[/bold] resuming OpenAI job {state['job_id']} (from {path})", highlight=False)
    else:
        if "file_id" not in state:
            text = chat_jsonl(rows)
            atomic_write(ctx.run_dir / "openai_train.jsonl", text)  # a record of exactly what was sent
            uploaded = client.files.create(file=("train.jsonl", text.encode()), purpose="fine-tune")
            state["file_id"] = uploaded.id
            write_json(path, state)
        hyper = {"n_epochs": int(cfg.epochs) if cfg.epochs else "auto",
                 "batch_size": cfg.batch_size or "auto",
                 "learning_rate_multiplier": cfg.learning_rate_multiplier}
        seed = ctx.experiment.seed_for(cfg.seed)
        job = client.fine_tuning.jobs.create(
            model=backend.config.name, training_file=state["file_id"], seed=seed,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
            suffix=cfg.suffix, metadata={"ladder_run": ctx.run_id})
        state.update(job_id=job.id, base_model=backend.config.name)
        write_json(path, state)  # before waiting: a re-run polls this job instead of making another
        console.print(f"[bold]{name}[/bold] OpenAI fine-tuning job {job.id} created ({len(rows)} examples); "
                      f"its id is in {path}, so an interrupted run resumes it", highlight=False)
    job = poll(client, state["job_id"], cfg.poll_interval, name)
    state.update(status=job.status, fine_tuned_model=job.fine_tuned_model)
    write_json(path, state)
    if job.status != "succeeded":
        why = f": {job.error.message}" if job.error and job.error.message else ""
        raise BackendError(f"OpenAI fine-tuning job {job.id} {job.status}{why}",
                           fix=f"fix the cause, then delete {path} and re-run to start a new job")
    model = job.fine_tuned_model
    trained = trained_model(ctx, name=model)
    trained.preflight()  # says so when the fine-tuned model has no price (its cost then shows as $0)
    hyper = job.hyperparameters.model_dump() if job.hyperparameters else {}
    extra = {"model": {"backend": "openai", "name": model},
             "training": {"route": "openai", "train_examples": len(rows)},
             "openai": {"job_id": job.id, "file_id": state["file_id"], "base_model": state.get("base_model"),
                        "fine_tuned_model": model, "status": job.status, "trained_tokens": job.trained_tokens,
                        "hyperparameters": hyper}}
    return trained, extra


def poll(client: Any, job_id: str, interval: float, name: str) -> Any:
    """Look at the job every `interval` seconds until it ends, showing its status as it goes."""
    started = time.monotonic()
    last = None
    with console.status(f"{name}: OpenAI job {job_id}") as status:
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            if job.status != last:
                console.print(f"[bold]{name}[/bold] job {job_id}: {job.status}", highlight=False)
                last = job.status
            if job.status in TERMINAL:
                return job
            status.update(f"{name}: OpenAI job {job_id} {job.status} · {time.monotonic() - started:.0f} s")
            time.sleep(interval)
