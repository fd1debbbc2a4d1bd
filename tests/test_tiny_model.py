"""Checks for the bundled offline model ladder/assets/ladder-tiny (built by scripts/build_tiny_model.py)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the tiny model must never need the Hub

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MODEL_DIR = Path(__file__).resolve().parents[1] / "ladder" / "assets" / "ladder-tiny"
INSTRUCTION = "Classify the sentiment of the review. Answer with exactly one word: positive, negative or neutral."
LABELS = {"positive", "negative", "neutral"}


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    return transformers.AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()


def messages(text, shots=()):
    msgs = [{"role": "system", "content": INSTRUCTION}]
    for shot_text, shot_label in shots:
        msgs += [{"role": "user", "content": f"Review: {shot_text}"}, {"role": "assistant", "content": shot_label}]
    return msgs + [{"role": "user", "content": f"Review: {text}"}]


def test_files_small_and_safetensors():
    assert (MODEL_DIR / "model.safetensors").is_file()
    size = sum(f.stat().st_size for f in MODEL_DIR.iterdir() if f.is_file())
    assert size < 10_000_000


def test_chat_template_renders_expected_format(tokenizer):
    msgs = messages("the soup was cold and bland", shots=[("great pizza", "positive")])
    rendered = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert rendered == (
        f"<|system|>\n{INSTRUCTION}<|end|>\n"
        "<|user|>\nReview: great pizza<|end|>\n"
        "<|assistant|>\npositive<|end|>\n"
        "<|user|>\nReview: the soup was cold and bland<|end|>\n"
        "<|assistant|>\n"
    )


def test_special_tokens_are_single_ids(tokenizer, model):
    assert tokenizer.eos_token == "<|end|>" and tokenizer.pad_token == "<|pad|>"
    for t in ["<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]:
        ids = tokenizer.encode(t, add_special_tokens=False)
        assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, t
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.config.max_position_embeddings == 512


@pytest.mark.parametrize("text", [
    "Hello, world!",
    "  two  spaces,\nnewlines\n\nand a trailing space ",
    "Review: the soup was cold and bland",
    "x = 3.14 * (2 + 40); print(\"done\") # 'quotes' & symbols ~`@^|\\",
])
def test_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_greedy_generation_returns_label_then_eos(tokenizer, model):
    tokenizer.padding_side = "left"
    prompts = [
        tokenizer.apply_chat_template(messages(t), add_generation_prompt=True, tokenize=False)
        for t in ["the pasta was delicious and the service was friendly",
                  "the battery was broken, waste of money",
                  "the plot was fine and the acting was okay"]
    ]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        assert tokenizer.eos_token_id in row
        answer = row[: row.index(tokenizer.eos_token_id) + 1]
        assert answer[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(answer, skip_special_tokens=True).strip() in LABELS
