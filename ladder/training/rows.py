"""Supervised training rows: one prompt and the assistant's answer, read from a data file, put into
trl's format, and checked against how the hf backend renders prompts at evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ladder.errors import DataError
from ladder.store import read_jsonl
from ladder.types import Guard, Message


class TrainRow(NamedTuple):
    """One supervised example: the prompt messages and the assistant's answer."""

    prompt: list[Message]
    completion: str


def read_sft_file(path: Path, field: str = "data") -> list[TrainRow]:
    """Rows of {"prompt": [...] | str, "completion": [...] | str} or {"messages": [..., assistant]}."""
    if not path.exists():
        raise DataError(f"SFT data file '{path}' does not exist", field=field,
                        fix="check the path; relative paths are read from the YAML file's folder")
    out = []
    for i, row in enumerate(read_jsonl(path)):
        try:
            if "prompt" not in row:  # OpenAI's chat format: the answer is the last message
                *prompt, answer = [_message(m) for m in row["messages"]]
                if answer.role != "assistant":
                    raise ValueError("the last message must be the assistant's")
                out.append(TrainRow(prompt, answer.content))
                continue
            prompt = row["prompt"]
            prompt = [Message("user", prompt)] if isinstance(prompt, str) else [_message(m) for m in prompt]
            completion = row["completion"]
            if not isinstance(completion, str):
                msgs = [_message(m) for m in completion]
                if len(msgs) != 1 or msgs[0].role != "assistant":
                    raise ValueError("the completion must be one assistant message")
                completion = msgs[0].content
            out.append(TrainRow(prompt, completion))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"row {i + 1} of '{path}' is not a prompt/completion row ({exc})", field=field,
                            fix='write {"prompt": [{"role": "user", "content": ...}], "completion": '
                                '[{"role": "assistant", "content": ...}]} per line') from None
    return out


def _message(m: Any) -> Message:
    if m["role"] not in ("system", "user", "assistant") or not isinstance(m["content"], str):
        raise ValueError(f"bad message {m!r}")
    return Message(m["role"], m["content"])


def trl_row(row: TrainRow, backend: Any, chat: bool) -> dict[str, Any]:
    """trl's prompt-completion format. With a chat template: conversational, so trl renders it
    with the template (the prompt with add_generation_prompt=True, as the hf backend does) and
    the completion ends on the template's end-of-turn. Without one: the exact text the hf backend
    feeds the model, and trl appends the tokenizer's EOS to the completion."""
    if chat:
        return {"prompt": [m.to_dict() for m in row.prompt],
                "completion": [{"role": "assistant", "content": row.completion}]}
    return {"prompt": backend.render(row.prompt), "completion": row.completion}


def template_guards(backend: Any, row: TrainRow) -> list[Guard]:
    """Training must see what evaluation sees: the prompt rendered the same way, and an answer
    that ends on a token the hf backend stops on (otherwise the model never learns to stop)."""
    tok = backend.tokenizer
    eos = {tok.eos_token_id} - {None}
    try:
        from transformers import GenerationConfig

        ids = GenerationConfig.from_pretrained(backend.path).eos_token_id
        eos |= set(ids if isinstance(ids, list) else [ids]) - {None}
    except OSError:  # no generation_config.json: the tokenizer's EOS is all the backend uses
        pass
    if not backend.uses_chat_template:
        if tok.eos_token is None:
            return [Guard("template_eos", "warn", "the tokenizer has no EOS token, so the answers are "
                          "trained without an end: the model will not learn to stop")]
        return [Guard("template", "ok", "no chat template: plain-text prompts, EOS after each answer")]
    head = backend.render(row.prompt)
    full = tok.apply_chat_template([m.to_dict() for m in row.prompt]
                                   + [{"role": "assistant", "content": row.completion}], tokenize=False)
    if not full.startswith(head):
        return [Guard("template", "warn", "the chat template renders a prompt differently inside a "
                      "finished conversation than with add_generation_prompt: the model is trained on "
                      "another context than it is evaluated on")]
    tail = tok(full[len(head):], add_special_tokens=False)["input_ids"]
    if not eos & set(tail):
        return [Guard("template_eos", "warn", f"the chat template does not end the assistant's turn "
                      f"with an EOS token the model stops on (EOS ids {sorted(eos)}): the finetuned model "
                      f"will not learn to stop; set generation.stop or fix the template")]
    return [Guard("template", "ok", "training renders prompts as evaluation does; answers end on EOS")]
