"""Shared fixtures. Everything offline: the hub is never reached (HF_HUB_OFFLINE=1), and each test
gets its own model-call cache so cache hits are only the ones the test itself made."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
# The suite checks table widths itself: a COLUMNS from the caller's terminal must not reach the CLI
# runs the tests start (test modules copy os.environ for their subprocesses at import).
os.environ.pop("COLUMNS", None)
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LADDER_CACHE_DIR", str(tmp_path / "cache"))
    # The subprocess helpers copied os.environ when first imported: without this, every `ladder`
    # subprocess shared ~/.cache/ladder, and a port reused by a later run's fake server was answered
    # from an earlier test's cache (a stage that sent no request, flaky).
    from tests import test_cli
    from tests.backends import api_support

    for env in (test_cli.ENV, api_support.ENV):
        monkeypatch.setitem(env, "LADDER_CACHE_DIR", str(tmp_path / "cache"))
    from ladder.backends import limits

    limits.reset()  # rate controllers are per process: a port reused by the next test's server is another model


@pytest.fixture(autouse=True)
def _no_inherited_columns():
    """Something under pytest (readline/ncurses) exports COLUMNS=80 at the C level, unseen in
    os.environ, and a CLI run in a subprocess would honour it (a piped table fits COLUMNS when it is
    set): unset it, so each test says the width it wants. Setting then deleting calls unsetenv()."""
    if "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = ""
        del os.environ["COLUMNS"]
    yield


@pytest.fixture
def one_thread(monkeypatch):
    """A tiny model trains fastest on one thread: on a busy machine, idle OpenMP threads spinning
    for a core make each step 10-100x slower. Launched trainers inherit it through the env."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """A tiny randomly initialised Llama with a BPE tokenizer trained here: it babbles, which is
    what tests of the generation mechanics (batching, n>1, finish reasons) want — fast and ours."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("random_model")
    specials = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the food was great and the service was slow", "positive negative neutral",
                             "Review: the soup was cold", "Classify the sentiment of the review."] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>",
                                   additional_special_tokens=specials[2:])
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 256
    fast.save_pretrained(out)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    return out


LABELS = ["positive", "negative", "neutral"]
WORDS = {"positive": ["great", "lovely", "superb"], "negative": ["awful", "cold", "rude"],
         "neutral": ["fine", "average", "ordinary"]}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(LABELS)
        rows.append({"text": f"the meal {i} was {rng.choice(WORDS[label])}", "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def experiment(tmp_path: Path, model_path: Path | str, *, n_train: int = 60, n_test: int = 40,
               stages: list | None = None, **overrides) -> Path:
    """Write a small sentiment experiment (data + YAML) under tmp_path; returns the YAML path."""
    write_jsonl(tmp_path / "data" / "train.jsonl", make_rows(n_train, seed=1))
    write_jsonl(tmp_path / "data" / "test.jsonl", make_rows(n_test, seed=2))
    config = {
        "name": "t",
        "results_dir": str(tmp_path / "results"),
        "task": {"data": {"train": "data/train.jsonl", "test": "data/test.jsonl"}, "target": "label",
                 "instruction": "Classify the sentiment of the review.", "template": "Review: {text}",
                 "choices": LABELS},
        "model": {"backend": "hf", "name": str(model_path)},
        "generation": {"max_tokens": 4},
        "stages": stages or [{"type": "zero_shot"}],
    }
    for key, value in overrides.items():
        config[key] = value
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
