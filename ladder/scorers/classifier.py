"""classifier: the probability a local sequence classifier gives one chosen label.

Any `AutoModelForSequenceClassification` works — a toxicity, sentiment or "is this on-task"
classifier from the hub or a folder. The input is a template over the completion (by default the
completion alone) and, when wanted, the prompt: "{prompt}\\n{completion}".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Sequence

from pydantic import Field

from ladder.config import Section
from ladder.errors import ConfigError
from ladder.scorers import Scorer, Template, check_template
from ladder.types import Example, Score

if TYPE_CHECKING:
    from ladder.scorers.context import ScoringContext


class SequenceModelConfig(Section):
    """Keys of every scorer that runs a local sequence-classification model."""

    model: str
    """A local folder or a hub id of an AutoModelForSequenceClassification."""
    batch_size: int = Field(32, ge=1)
    """Texts per forward pass."""
    max_length: int = Field(512, ge=8)
    """Longest input in tokens; longer ones lose their start (the completion is at the end)."""
    device: str = "auto"
    """'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'."""


class ClassifierConfig(SequenceModelConfig):
    type: Literal["classifier"] = "classifier"
    label: str | int
    """The label whose probability is the score: a name from the model's id2label (any case) or an
    index."""
    template: Template = "{completion}"
    """The classifier's input: {completion}, {prompt} (the task prompt as text), {target} and data
    columns. The default classifies the completion alone."""


class SequenceModel:
    """A loaded sequence classifier: logits for many texts, deduplicated, batched by length."""

    def __init__(self, config: SequenceModelConfig):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ladder.backends.hf import _first_line, _quiet_transformers

        _quiet_transformers()
        try:
            tok = AutoTokenizer.from_pretrained(config.model)
            model, info = AutoModelForSequenceClassification.from_pretrained(config.model, output_loading_info=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load '{config.model}' as a sequence classifier ({_first_line(exc)})",
                              field="model", fix="give a local folder or a hub id of an "
                              "AutoModelForSequenceClassification (offline, only local folders load)") from None
        if info["missing_keys"]:
            # transformers fills a missing head with random weights and only logs it: a plain
            # language model loaded here would "score" with noise. Refuse instead.
            raise ConfigError(f"'{config.model}' has no trained classification head (missing "
                              f"{', '.join(sorted(info['missing_keys'])[:3])})", field="model",
                              fix="use a model trained for sequence classification or as a reward model")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if model.config.pad_token_id is None:
            # Batched sequence classification finds each row's last real token by the pad id.
            model.config.pad_token_id = tok.pad_token_id
        tok.truncation_side = "left"  # the completion, which is being judged, comes last
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.config = config
        self.tokenizer = tok
        self.model = model.to(device).eval()
        # Without any pad id rows cannot share a batch.
        self.batch_size = config.batch_size if tok.pad_token_id is not None else 1

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The conversation as text in the model's own chat template."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def logits(self, texts: Sequence[str], special_tokens: bool = True) -> list[list[float]]:
        """Logits per text. `special_tokens`: add BOS etc. (False for text a chat template wrote)."""
        import torch

        unique = sorted(set(texts), key=len)  # best-of-N pools repeat themselves; sorting pads little
        out: dict[str, list[float]] = {}
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start:start + self.batch_size]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.config.max_length, add_special_tokens=special_tokens)
            with torch.inference_mode():
                logits = self.model(**enc.to(self.model.device)).logits.float().cpu().tolist()
            out.update(zip(chunk, logits))
        return [out[t] for t in texts]


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow for large |x|."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    z = math.exp(x)
    return z / (1 + z)


class ClassifierScorer(Scorer):
    Config = ClassifierConfig
    # It reads the classifier's probabilities, never the scored policy's token probabilities, so
    # a model trained by RL can be scored with it.
    needs_probabilities = False

    def __init__(self, config: ClassifierConfig, ctx: ScoringContext):
        super().__init__(config, ctx)
        check_template(config.template, ctx, "template")
        self.model = SequenceModel(config)
        cfg = self.model.model.config
        self.names = [str(cfg.id2label.get(i, i)) for i in range(self.num_labels)]
        self.index = self._label_index(config.label)
        # One output, or labels trained independently: each logit is its own sigmoid.
        self.sigmoid = self.num_labels == 1 or cfg.problem_type == "multi_label_classification"

    @property
    def num_labels(self) -> int:
        return self.model.num_labels

    def _label_index(self, label: str | int) -> int:
        if isinstance(label, int):
            if 0 <= label < self.num_labels:
                return label
        else:
            lower = [n.lower() for n in self.names]
            if label.lower() in lower:
                return lower.index(label.lower())
        raise ConfigError(f"the classifier has no label {label!r}", field="label",
                          fix=f"use a name or an index: {', '.join(f'{i}={n}' for i, n in enumerate(self.names))}")

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        texts = [self.fill(self.config.template, ex, c) for ex, c in zip(examples, completions)]
        out = []
        for logits in self.model.logits(texts):
            if self.sigmoid:
                p = sigmoid(logits[self.index])
            else:
                top = max(logits)
                exp = [math.exp(x - top) for x in logits]
                p = exp[self.index] / sum(exp)
            predicted = self.names[max(range(len(logits)), key=logits.__getitem__)]
            out.append(Score(p, extracted=predicted))
        return out
