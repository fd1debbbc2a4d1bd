#!/usr/bin/env python
"""Build `ladder-tiny`, the small offline default model shipped with ladder,
and the quickstart sentiment data set.

Everything here is synthetic and made from scratch, so the quickstart runs on
a laptop CPU with no network access:

  1. the quickstart data set  -> data/sentiment/{train,test}.jsonl
  2. a synthetic instruction-following training corpus (chat conversations)
  3. a byte-level BPE tokenizer, wrapped as a transformers PreTrainedTokenizerFast
  4. a ~2M-parameter LlamaForCausalLM trained from scratch with a plain AdamW loop
  5. save_pretrained -> ladder/assets/ladder-tiny/
  6. a quick evaluation on the quickstart test set (zero-shot and 4-shot)

Design intent: the model is a tiny "instruction follower" over toy tasks. Its
training corpus contains sentiment classification, but only with PART of the
sentiment lexicon and with different review templates than the quickstart data.
So zero-shot accuracy on the quickstart test set is clearly above chance but
clearly below perfect, and fine-tuning on data/sentiment/train.jsonl has room
to win. The quickstart test set never appears in the training corpus.

Run (about 8 minutes on 2 otherwise idle CPU cores; most of it is training):

    HF_HUB_OFFLINE=1 python scripts/build_tiny_model.py

The progress probe printed during training shows when the sentiment task "clicks"
(held-out accuracy jumps from ~0.33 to ~1.0, typically between steps 250 and 500).
The committed model was built with `--threads 1` (the build machine was busy);
float results differ slightly with the thread count, the data set does not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hub

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------
# Prompt format. The ladder package renders prompts exactly this way, so the
# training corpus uses the very same chat template.
# --------------------------------------------------------------------------

INSTRUCTION = "Classify the sentiment of the review. Answer with exactly one word: positive, negative or neutral."
TEMPLATE = "Review: {text}"
LABELS = ["positive", "negative", "neutral"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n"
    "{% endif %}"
)
EOS, PAD = "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, EOS, *ROLE_TOKENS]  # ids 0..4

MAX_LEN = 512  # context window (max_position_embeddings)


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Plain-python twin of CHAT_TEMPLATE (checked against the real template in main)."""
    out = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return out + ("<|assistant|>\n" if add_generation_prompt else "")


# --------------------------------------------------------------------------
# Word lists.
# --------------------------------------------------------------------------

SENTIMENT_WORDS = {
    "positive": """great excellent delicious wonderful fantastic superb amazing lovely brilliant
        perfect tasty fresh friendly charming delightful outstanding impressive enjoyable beautiful
        awesome terrific marvelous splendid gorgeous flawless stunning pleasant helpful gripping
        hilarious comfortable reliable sturdy generous exceptional heartwarming""".split(),
    "negative": """terrible awful bland cold rude boring horrible disappointing dreadful stale
        greasy slow broken flimsy cheap noisy dirty overpriced tedious clumsy poor weak soggy burnt
        useless annoying painful messy awkward unpleasant disgusting faulty sloppy dull inedible
        lousy""".split(),
    "neutral": """okay average fine ordinary standard typical decent acceptable adequate passable
        unremarkable fair so-so middling moderate normal plain basic reasonable routine usual
        conventional modest simple regular predictable serviceable tolerable alright mild
        medium common forgettable expected unsurprising""".split(),
}
SENTIMENT_PHRASES = {
    "positive": [
        "would come back again", "highly recommend it", "worth every penny", "loved every minute",
        "exceeded my expectations", "five stars", "will buy again", "a real treat", "made my day",
        "cannot wait to return",
    ],
    "negative": [
        "never again", "waste of money", "would not recommend it", "want my money back", "one star",
        "a total letdown", "avoid this place", "regret buying it", "fell apart quickly",
        "could not finish it",
    ],
    "neutral": [
        "nothing special", "it did the job", "neither good nor bad", "about what i expected",
        "three stars", "no strong feelings either way", "it was fine i guess", "middle of the road",
        "might try it again, might not", "exactly as described",
    ],
}

REVIEW_NOUNS = {
    "restaurant": """soup pasta pizza burger steak salad dessert coffee service waiter menu table
        bread curry noodles fries sauce staff atmosphere portion""".split(),
    "product": """battery screen charger keyboard headphones blender jacket shoes backpack lamp
        case cable packaging delivery speaker camera mattress vacuum kettle watch""".split(),
    "movie": """plot acting ending soundtrack script dialogue cast film movie sequel villain hero
        pacing visuals cinematography story director trailer costumes finale""".split(),
}
# Label-free context clauses, so reviews are not only "the X was Y".
CONTEXT_CLAUSES = {
    "restaurant": ["we went there on a friday", "we had dinner here last night", "i came here for lunch",
                   "we booked a table for four", "i ordered takeaway"],
    "product": ["i bought it last week", "it arrived on monday", "i have used it for a month",
                "i got this as a gift", "i ordered the blue one"],
    "movie": ["i watched it with my family", "we saw it at the cinema", "i streamed it on sunday",
              "i went to the late show", "we watched it twice"],
}

# Quickstart review templates. The training corpus uses a DIFFERENT set (below),
# so the model has to generalise across phrasing, not memorise strings.
QUICKSTART_TEMPLATES = [
    "the {n} was {a}",
    "the {n} was {a} and the {n2} was {a2}",
    "{a} {n}, {p}",
    "honestly the {n} felt {a}",
    "{p}. the {n} was {a}",
    "i thought the {n} was {a}",
    "{a} {n} and {a2} {n2}",
    "the {n} is {a}, {p}",
    "{c}. the {n} was {a}",
    "{c} and the {n} was {a}",
    "{p}",
    "overall {a}. {p}",
]
CORPUS_TEMPLATES = [
    "the {n} seemed {a} to me",
    "what a {a} {n}",
    "we found the {n} {a}",
    "{n}: {a}",
    "their {n} is {a} and their {n2} is {a2}",
    "{p}!",
    "really {a} {n}",
    "a {a} {n}, {p}",
    "{c}, {a} {n}",
    "my {n} was {a}",
]

TOPICS = {
    "food": """pizza soup bread kitchen chef recipe cheese oven breakfast salad noodles spices dinner
        bakery""".split(),
    "sports": """football goal team coach match tennis player stadium race score referee league
        runner season""".split(),
    "weather": """rain snow storm wind cloud sunshine thunder forecast fog temperature frost
        umbrella breeze heatwave""".split(),
    "music": """guitar song concert drum band melody piano singer album choir chorus violin lyrics
        rhythm""".split(),
    "technology": """computer phone software laptop app internet robot server keyboard code chip
        website battery update""".split(),
    "animals": """dog cat horse cow lion tiger rabbit sheep goat bear wolf fox duck eagle""".split(),
}
TOPIC_FRAMES = ["the {w1} and the {w2}", "a story about the {w1}", "i read about a {w1} and a {w2} today",
                "there was a {w1} near the {w2}", "everyone talked about the {w1}", "news: {w1}, {w2} and {w3}",
                "my friend loves the {w1}", "the {w1} was next to the {w2}"]

CATEGORIES = {
    "animal": "dog cat horse cow lion tiger rabbit mouse sheep goat bear wolf fox duck eagle".split(),
    "fruit": "apple banana orange grape lemon mango peach pear cherry plum melon kiwi".split(),
    "vehicle": "car bus train bicycle truck boat plane taxi tractor scooter".split(),
    "tool": "hammer saw drill wrench shovel rake screwdriver chisel pliers axe".split(),
    "country": "france japan brazil canada egypt india kenya mexico norway peru".split(),
    "color": "red blue green yellow purple pink brown black white grey".split(),
    "clothing": "shirt hat sock coat scarf glove boot dress skirt sweater".split(),
}
FILLER_WORDS = """the a and of to in is it that was for on with as at by this from or one all they we
    you there when up out so what time some can more day very make like over just people know take
    year good new old big small long little house car tree river city road book door window garden
    morning evening friend family water light paper music table chair happy quiet green blue""".split()
ARBITRARY_LABELS = ["alpha", "beta", "gamma", "delta", "north", "south", "east", "west", "left", "right",
                    "up", "down", "one", "two", "three", "four", "x", "y", "z", "cat a", "cat b",
                    "group 1", "group 2", "type a", "type b", "foo", "bar", "baz"]


def nonsense_word(rng: random.Random) -> str:
    """A made-up word (e.g. 'zorvy') whose meaning can only come from the in-context examples."""
    cons, vows = "bdfgklmnprstvz", "aeiou"
    word = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(2, 3)))
    return word + rng.choice(["", "y", "ish", "ic", "o"])


# --------------------------------------------------------------------------
# 1. Sentiment reviews and the quickstart data set.
# --------------------------------------------------------------------------


def split_lexicon(rng: random.Random, frac_seen: float) -> dict:
    """Words/phrases of each class the training corpus may use. The rest stay 'unseen'
    (their sentiment is never shown to the model; fine-tuning has to teach it)."""
    seen = {}
    for label in LABELS:
        words, phrases = sorted(SENTIMENT_WORDS[label]), sorted(SENTIMENT_PHRASES[label])
        rng.shuffle(words)
        rng.shuffle(phrases)
        seen[label] = {
            "words": words[: round(frac_seen * len(words))],
            "phrases": phrases[: round(frac_seen * len(phrases))],
        }
    return seen


def make_review(rng: random.Random, label: str, lexicon: dict, templates: list[str]) -> str:
    """Fill a template. All sentiment carriers ({a}, {a2}, {p}) come from `label`'s lexicon,
    everything else is label-free, so the label is decided by the sentiment words alone."""
    domain = rng.choice(sorted(REVIEW_NOUNS))
    nouns = rng.sample(REVIEW_NOUNS[domain], 2)
    words, phrases = lexicon[label]["words"], lexicon[label]["phrases"]
    a, a2 = rng.sample(words, 2)
    return rng.choice(templates).format(
        n=nouns[0], n2=nouns[1], a=a, a2=a2, p=rng.choice(phrases), c=rng.choice(CONTEXT_CLAUSES[domain])
    )


def build_quickstart(rng: random.Random, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """Balanced, de-duplicated rows over the FULL lexicon; no text is in both splits."""
    full = {lab: {"words": SENTIMENT_WORDS[lab], "phrases": SENTIMENT_PHRASES[lab]} for lab in LABELS}
    seen_texts: set[str] = set()
    rows: list[dict] = []
    while len(rows) < n_train + n_test:
        label = LABELS[len(rows) % 3]  # round-robin keeps classes balanced
        text = make_review(rng, label, full, QUICKSTART_TEMPLATES)
        if text not in seen_texts:
            seen_texts.add(text)
            rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows[:n_train], rows[n_train:]


# --------------------------------------------------------------------------
# 2. The training corpus: conversations over several toy tasks.
#
# Each task is a function rng -> (instruction, make_example), where make_example()
# returns one (user, assistant) pair. A conversation is: system instruction, k
# few-shot turns of the same task, then the final query -- the same layout the
# ladder package uses for few-shot prompts.
# --------------------------------------------------------------------------


def words_text(rng: random.Random, vocab: list[str], lo: int, hi: int) -> list[str]:
    return [rng.choice(vocab) for _ in range(rng.randint(lo, hi))]


def task_sentiment(rng, ctx):
    """Sentiment with the seen part of the lexicon and corpus-only templates."""
    instruction = rng.choice([INSTRUCTION] * 4 + [
        "What is the sentiment of this review? Reply positive, negative or neutral.",
        "Decide whether the review is positive, negative or neutral.",
        "Sentiment classification. Labels: positive, negative, neutral.",
        "Read the review and answer with its sentiment (positive, negative or neutral).",
        "Is the following review positive, negative or neutral? One word only.",
    ])
    fmt = rng.choice([TEMPLATE] * 4 + ["Text: {text}", "{text}", "Customer review: {text}"])

    def example():
        label = rng.choice(LABELS)
        return fmt.format(text=make_review(rng, label, ctx["seen_lexicon"], CORPUS_TEMPLATES)), label

    return instruction, example


def task_sentiment_novel_words(rng, ctx):
    """Sentiment where some adjectives are made-up words whose polarity is only shown by
    earlier turns of the same conversation: teaches the model to use few-shot examples."""
    instruction, _ = task_sentiment(rng, ctx)
    fmt = rng.choice([TEMPLATE, TEMPLATE, "Text: {text}"])
    novel = {lab: {"words": [nonsense_word(rng) for _ in range(2)], "phrases": ctx["seen_lexicon"][lab]["phrases"]}
             for lab in LABELS}

    def example():
        label = rng.choice(LABELS)
        lex = novel if rng.random() < 0.7 else ctx["seen_lexicon"]
        return fmt.format(text=make_review(rng, label, lex, CORPUS_TEMPLATES)), label

    return instruction, example


def task_topic(rng, ctx):
    topics = sorted(TOPICS)
    instruction = rng.choice([
        "Which topic is this text about? Answer with one word: " + ", ".join(topics[:-1]) + " or " + topics[-1] + ".",
        "Classify the topic of the text. Options: " + ", ".join(topics) + ".",
        "What is the text about? Reply with the topic only.",
    ])

    def example():
        topic = rng.choice(topics)
        w = rng.sample(TOPICS[topic], 3)
        return "Text: " + rng.choice(TOPIC_FRAMES).format(w1=w[0], w2=w[1], w3=w[2]), topic

    return instruction, example


def task_incontext_labels(rng, ctx):
    """Arbitrary label words for categories, defined only by the examples in the conversation."""
    instruction = rng.choice([
        "Label each item the same way as in the examples.",
        "Use the labels from the previous answers.",
        "Classify the input. Follow the examples.",
    ])
    cats = rng.sample(sorted(CATEGORIES), rng.randint(2, 3))
    label_of = dict(zip(cats, rng.sample(ARBITRARY_LABELS + [nonsense_word(rng) for _ in range(6)], len(cats))))

    def example():
        cat = rng.choice(cats)
        return "Input: " + rng.choice(CATEGORIES[cat]), label_of[cat]

    return instruction, example


def task_copy(rng, ctx):
    instruction = rng.choice(["Repeat the text exactly.", "Copy the input.", "Say the same words back."])

    def example():
        w = " ".join(words_text(rng, ctx["vocab"], 1, 6))
        return "Text: " + w, w

    return instruction, example


def task_reverse(rng, ctx):
    instruction = rng.choice(["Reverse the order of the words.", "Write the words backwards, last word first."])

    def example():
        w = words_text(rng, ctx["vocab"], 2, 5)
        return "Text: " + " ".join(w), " ".join(reversed(w))

    return instruction, example


def task_arithmetic(rng, ctx):
    instruction = rng.choice(["Compute the answer. Reply with a number.", "Solve the arithmetic problem.",
                              "Answer with the result only."])

    def example():
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        if rng.random() < 0.5:
            return f"What is {a} + {b}?", str(a + b)
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}?", str(a - b)

    return instruction, example


def task_count(rng, ctx):
    instruction = rng.choice(["How many words are in the text? Answer with a number.", "Count the words."])

    def example():
        w = words_text(rng, ctx["vocab"], 1, 8)
        return "Text: " + " ".join(w), str(len(w))

    return instruction, example


def task_yes_no(rng, ctx):
    instruction = rng.choice(["Answer yes or no.", "Reply with yes or no only.", "Answer the question with yes or no."])

    def example():
        if rng.random() < 0.5:
            cat = rng.choice(sorted(CATEGORIES))
            item_cat = cat if rng.random() < 0.5 else rng.choice(sorted(CATEGORIES))
            item = rng.choice(CATEGORIES[item_cat])
            return f"Is {item} a {cat}?", "yes" if item in CATEGORIES[cat] else "no"
        w = words_text(rng, ctx["vocab"], 2, 6)
        probe = rng.choice(w) if rng.random() < 0.5 else rng.choice(ctx["vocab"])
        return f"Does the text contain the word {probe}? Text: {' '.join(w)}", "yes" if probe in w else "no"

    return instruction, example


def task_first_last(rng, ctx):
    which = rng.choice(["first", "last"])
    instruction = f"What is the {which} word of the text? Answer with that word."

    def example():
        w = words_text(rng, ctx["vocab"], 2, 7)
        return "Text: " + " ".join(w), w[0] if which == "first" else w[-1]

    return instruction, example


# (task, weight): sentiment is the task we care most about; the rest give variety
# and keep the model a general (if very small) instruction follower.
TASKS = [
    (task_sentiment, 0.36), (task_sentiment_novel_words, 0.08), (task_incontext_labels, 0.13),
    (task_topic, 0.10), (task_copy, 0.06), (task_reverse, 0.03), (task_arithmetic, 0.07),
    (task_count, 0.05), (task_yes_no, 0.07), (task_first_last, 0.05),
]


def make_conversation(rng: random.Random, ctx: dict) -> list[dict]:
    task = rng.choices([t for t, _ in TASKS], weights=[w for _, w in TASKS])[0]
    instruction, example = task(rng, ctx)
    r = rng.random()  # number of few-shot turns: often 0, mostly a handful, sometimes many
    n_shots = 0 if r < 0.2 else rng.randint(1, 10) if r < 0.9 else rng.randint(11, 30)
    messages = [] if rng.random() < 0.08 else [{"role": "system", "content": instruction}]
    for _ in range(n_shots + 1):
        user, answer = example()
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return messages


# --------------------------------------------------------------------------
# 3. Tokenizer.
# --------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    # Byte-level BPE: every string is representable, so decode(encode(x)) == x.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, extra_special_tokens=ROLE_TOKENS,
        clean_up_tokenization_spaces=False,  # keep text exactly as written
        padding_side="left",  # decoder-only: batched generation wants left padding
        model_max_length=MAX_LEN,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def encode_for_training(tok, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids and labels. Only assistant answers (and their closing <|end|>) are trained on:
    with so little compute, all of it goes into answering."""
    ids, labels = [], []
    for m in messages:
        head = tok.encode(f"<|{m['role']}|>\n", add_special_tokens=False)
        body = tok.encode(m["content"], add_special_tokens=False) + [tok.eos_token_id]
        tail = tok.encode("\n", add_special_tokens=False)
        target = m["role"] == "assistant"
        ids += head + body + tail
        labels += [-100] * len(head) + (body if target else [-100] * len(body)) + [-100] * len(tail)
    return ids, labels


# --------------------------------------------------------------------------
# 4. Model and training.
# --------------------------------------------------------------------------


def make_batches(examples, max_tokens: int, rng: random.Random):
    """Group similar lengths together (less padding), at most max_tokens (incl. padding) each."""
    examples = sorted(examples, key=lambda e: len(e[0]))
    batches, cur = [], []
    for ex in examples:
        if cur and (len(cur) + 1) * len(ex[0]) > max_tokens:
            batches.append(cur)
            cur = []
        cur.append(ex)
    batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(batch, pad_id: int):
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(batch):  # right padding while training: positions start at 0
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return input_ids, mask, labels


def train(model, batches, pad_id: int, lr: float, log_every: int, probe=None, probe_every: int = 250):
    """AdamW on answer tokens. `probe()` (a held-out check, returns a string) runs every probe_every steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    steps, warmup = len(batches), max(1, len(batches) // 20)
    # linear warmup, then cosine decay to 10% of the peak
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.train()
    t0, running = time.time(), []
    for step, batch in enumerate(batches, 1):
        input_ids, mask, labels = collate(batch, pad_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.item())
        if step % log_every == 0 or step == steps:
            print(f"  step {step:5d}/{steps}  loss {sum(running) / len(running):.4f}  "
                  f"lr {sched.get_last_lr()[0]:.2e}  {time.time() - t0:.0f}s", flush=True)
            running = []
        if probe is not None and (step % probe_every == 0 or step == steps):
            model.eval()
            print(f"    probe: {probe()}", flush=True)
            model.train()
    model.eval()


# --------------------------------------------------------------------------
# 5. Evaluation on the quickstart test set, exactly as the package prompts.
# --------------------------------------------------------------------------


def quickstart_messages(text: str, shots: list[dict] = ()) -> list[dict]:
    messages = [{"role": "system", "content": INSTRUCTION}]
    for s in shots:
        messages += [{"role": "user", "content": TEMPLATE.format(text=s["text"])},
                     {"role": "assistant", "content": s["label"]}]
    return messages + [{"role": "user", "content": TEMPLATE.format(text=text)}]


@torch.no_grad()
def evaluate(model, tok, rows, shot_pool, n_shots: int, rng: random.Random, batch_size: int = 50):
    """Greedy decoding, max 8 new tokens, left padding. Returns (accuracy, eos_rate, predictions)."""
    tok.padding_side = "left"
    correct = stopped = 0
    preds = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        prompts = [tok.apply_chat_template(quickstart_messages(r["text"], rng.sample(shot_pool, n_shots)),
                                           add_generation_prompt=True, tokenize=False) for r in chunk]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=8, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for r, gen in zip(chunk, out[:, enc["input_ids"].shape[1]:].tolist()):
            stopped += tok.eos_token_id in gen
            pred = tok.decode(gen, skip_special_tokens=True).strip().lower()
            correct += pred == r["label"]
            preds.append(pred)
    return correct / len(rows), stopped / len(rows), preds


# --------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "ladder" / "assets" / "ladder-tiny")
    ap.add_argument("--data-dir", type=Path, default=REPO / "data" / "sentiment")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    ap.add_argument("--batch-tokens", type=int, default=3072, help="tokens per batch, padding included")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--frac-seen", type=float, default=0.35,
                    help="fraction of the sentiment lexicon the corpus may use (rest: quickstart only)")
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--eval-rows", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-only", action="store_true", help="only (re)write the quickstart data set")
    args = ap.parse_args()

    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    # 1. Quickstart data set (its own RNG, so changing corpus settings never changes the data).
    train_rows, test_rows = build_quickstart(random.Random(f"quickstart-{args.seed}"), 2000, 600)
    write_jsonl(args.data_dir / "train.jsonl", train_rows)
    write_jsonl(args.data_dir / "test.jsonl", test_rows)
    print(f"[1] quickstart data: {len(train_rows)} train / {len(test_rows)} test rows -> {args.data_dir}")
    if args.data_only:
        return

    # 2. Corpus context. The general vocabulary includes EVERY sentiment word, so the model
    #    knows all the tokens (via copy/reverse/count tasks) -- but only the seen part is ever
    #    paired with a sentiment label.
    seen_lexicon = split_lexicon(random.Random(f"lexicon-{args.seed}"), args.frac_seen)
    vocab = sorted(set(FILLER_WORDS + [w for ws in SENTIMENT_WORDS.values() for w in ws]
                       + [w for ws in REVIEW_NOUNS.values() for w in ws]
                       + [w for ws in TOPICS.values() for w in ws] + [w for ws in CATEGORIES.values() for w in ws]))
    ctx = {"seen_lexicon": seen_lexicon, "vocab": vocab}
    forbidden = {TEMPLATE.format(text=r["text"]) for r in test_rows} | {r["text"] for r in test_rows}
    for label in LABELS:
        print(f"    {label:8s} corpus sees {len(seen_lexicon[label]['words'])}/{len(SENTIMENT_WORDS[label])} "
              f"words, {len(seen_lexicon[label]['phrases'])}/{len(SENTIMENT_PHRASES[label])} phrases")

    # 3. Tokenizer, trained on a sample of rendered conversations.
    tok_convs = [make_conversation(rng, ctx) for _ in range(4000)]
    tok = train_tokenizer([render(c) for c in tok_convs], args.vocab_size)
    for c in tok_convs[:50]:  # the Jinja chat template and our renderer/encoder agree
        assert tok.apply_chat_template(c, tokenize=False) == render(c)
        assert encode_for_training(tok, c)[0] == tok(render(c), add_special_tokens=False, verbose=False)["input_ids"]
    sample = "Hello,  World!\n\tTabs & 'quotes' -- 3.14 + 42 = ?\n\n  trailing spaces  "
    assert tok.decode(tok.encode(sample, add_special_tokens=False)) == sample
    example = "Review: the soup was cold and bland"
    print(f"[2] ({time.time() - t_start:.0f}s) tokenizer: vocab {len(tok)}; {example!r} -> {tok.tokenize(example)}")

    # 4. Corpus: generate conversations until there is enough for `steps` batches.
    batches, n_dropped = [], 0
    while len(batches) < args.steps:
        chunk = []
        for _ in range(4000):
            conv = make_conversation(rng, ctx)
            if any(m["content"] in forbidden for m in conv):
                n_dropped += 1  # never train on a quickstart test text
                continue
            ids, labels = encode_for_training(tok, conv)
            while len(ids) > MAX_LEN:  # too long: drop the earliest few-shot turn
                conv = conv[:1] + conv[3:] if conv[0]["role"] == "system" else conv[2:]
                ids, labels = encode_for_training(tok, conv)
            chunk.append((ids, labels))
        batches += make_batches(chunk, args.batch_tokens, rng)
    batches = batches[: args.steps]
    n_tok = sum(len(ids) for b in batches for ids, _ in b)
    print(f"[3] ({time.time() - t_start:.0f}s) corpus: {sum(len(b) for b in batches)} conversations, "
          f"{n_tok:,} tokens in {len(batches)} batches "
          f"({n_dropped} generated conversations dropped for containing a test text)")

    # 5. Model: a small Llama. Tied embeddings keep the file small.
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=192, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=MAX_LEN,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[4] training LlamaForCausalLM with {n_params:,} parameters for {len(batches)} steps")
    # Progress probe: zero-shot accuracy on held-out corpus-style sentiment reviews (seen lexicon,
    # corpus templates -- NOT the quickstart test set), to watch the task being picked up.
    probe_rng = random.Random(f"probe-{args.seed}")
    probe_rows = [{"text": make_review(probe_rng, lab, seen_lexicon, CORPUS_TEMPLATES), "label": lab}
                  for lab in LABELS * 20]
    probe = lambda: "held-out corpus-style sentiment accuracy %.2f" % evaluate(  # noqa: E731
        model, tok, probe_rows, [], 0, probe_rng)[0]
    train(model, batches, tok.pad_token_id, args.lr, log_every=25, probe=probe)

    # 6. Save. generation_config makes plain model.generate() greedy and stop at <|end|>.
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False, max_new_tokens=16)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"[5] ({time.time() - t_start:.0f}s) saved to {args.out} ({size / 1e6:.1f} MB)")

    # 7. Quick evaluation, reloading from disk through the standard Auto* path.
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(args.out)
    model = AutoModelForCausalLM.from_pretrained(args.out).eval()
    eval_rows = test_rows[: args.eval_rows]
    for k in (0, 4):
        acc, eos, preds = evaluate(model, tok, eval_rows, train_rows, k, random.Random(f"shots-{args.seed}"))
        counts = {lab: preds.count(lab) for lab in LABELS}
        other = len(preds) - sum(counts.values())
        print(f"[6] {k}-shot on {len(eval_rows)} test rows: accuracy {acc:.3f}  eos-rate {eos:.3f}  "
              f"predictions {counts} other={other}")
    print(f"done in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
