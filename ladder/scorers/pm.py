"""pm: a preference (reward) model, read against a reference response.

A PM's raw score has no meaning across contexts: one prompt's responses may all score 3.1,
another's −7. So each response is scored beside a fixed reference response *in the same context*,
and the score is softmax([s_response, s_reference])[0] — under the Bradley-Terry model PMs are
trained with, the probability under the PM that the response is preferred to the reference. It
lies in (0, 1), compares across prompts, and 0.5 means "as good as the reference". Whether the PM's
probabilities match how often it is right is a property of the PM, not a given: the reward_model
stage measures it on held-out pairs (its calibration line).

What the PM reads is rendered by one function, `pm_text`, in training (the reward_model stage),
in its held-out accuracy and here, so the scorer reads text in the format the PM learned:
- a backbone with a chat template: the conversation through that template (as trl renders it);
- without one: an hh-rlhf transcript, "Human: …\\n\\nAssistant: …", ending in the EOS token;
- a plain text (a `template:` here, or unstructured pairs): the text and the EOS token.
A PM trained by ladder records which of the first two it learned (ladder_pm.json in its folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import model_validator

from ladder.errors import ConfigError
from ladder.registry import STAGES
from ladder.scorers import Scorer, Template, check_template, scorer_class
from ladder.scorers.classifier import SequenceModel, SequenceModelConfig, sigmoid
from ladder.store import read_json, write_json
from ladder.types import Example, Guard, Message, Score

if TYPE_CHECKING:
    from ladder.scorers.context import ScoringContext

FORMAT_FILE = "ladder_pm.json"
"""In a PM folder ladder trained: {"chat": true | false}, the rendering it was trained on."""

def transcript_text(messages: Sequence[dict[str, str]]) -> str:
    """Messages as an hh-rlhf transcript. The format has no system turn: a system message (the
    task's instruction) opens the next Human turn."""
    turns, system = [], []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
        elif m["role"] == "user":
            turns.append("Human: " + "\n\n".join([*system, m["content"]]))
            system = []
        else:
            turns.append("Assistant: " + m["content"])
    return "\n\n".join(turns)


def pm_text(conversation: Any, chat: bool, tokenizer: Any) -> str:
    """The text a PM reads for one conversation (a message list ending in the assistant's turn) or
    one plain text — the same in training, held-out accuracy and scoring. Tokenize it with
    `special_tokens(conversation, chat)`."""
    if not isinstance(conversation, str) and chat:
        return tokenizer.apply_chat_template(list(conversation), tokenize=False)
    text = conversation if isinstance(conversation, str) else transcript_text(conversation)
    eos = tokenizer.eos_token or ""
    # trl's RewardTrainer ends every non-chat text with EOS; the score head reads the last token.
    return text if text.endswith(eos) else text + eos


def special_tokens(conversation: Any, chat: bool) -> bool:
    """Whether the tokenizer adds its special tokens (BOS) to pm_text's text: not where a chat
    template wrote them itself — what trl does for each kind of input."""
    return isinstance(conversation, str) or not chat


class PMReader:
    """A loaded PM and the rendering it was trained on: rewards of conversations."""

    def __init__(self, config: SequenceModelConfig, chat: bool | None = None):
        self.model = SequenceModel(config)
        if chat is None:
            recorded = Path(config.model) / FORMAT_FILE
            chat = read_json(recorded)["chat"] if recorded.exists() else self.model.has_chat_template
        self.chat = bool(chat) and self.model.has_chat_template

    def texts(self, conversations: Sequence[Any]) -> list[str]:
        return [pm_text(c, self.chat, self.model.tokenizer) for c in conversations]

    def rewards(self, conversations: Sequence[Any]) -> list[float]:
        """The PM's scalar reward of each conversation; plain texts and conversations may mix."""
        texts = self.texts(conversations)
        flags = [special_tokens(c, self.chat) for c in conversations]
        out: list[float] = [0.0] * len(texts)
        for flag in set(flags):
            idx = [i for i, f in enumerate(flags) if f == flag]
            for i, (value, *_) in zip(idx, self.model.logits([texts[i] for i in idx], special_tokens=flag)):
                out[i] = value
        return out


def record_format(model_dir: Path, chat: bool) -> None:
    """Written by the reward_model stage into the PM's folder: the rendering it trained on."""
    write_json(Path(model_dir) / FORMAT_FILE, {"chat": chat})


def held_out_verdict(model: str) -> dict[str, Any] | None:
    """The held-out accuracy guard of the reward_model stage that trained the PM in `model`: its
    metrics.json sits beside the model/ folder."""
    metrics = Path(model).parent / "metrics.json"
    if Path(model).name != "model" or not metrics.exists():
        return None
    try:
        guards = read_json(metrics).get("guards", [])
    except (OSError, ValueError):
        return None
    return next((g for g in guards if g.get("name") == "beats_chance"), None)


def pm_name(scorer: Any) -> str | None:
    """The PM folder a scorer reads, or None for a scorer that is no PM."""
    return str(Path(scorer.config.model).resolve()) if isinstance(scorer, PMScorer) else None


def trained_against(ctx: ScoringContext, from_stage: str | None) -> dict[str, str]:
    """PM folders a policy was RL-trained against, each with the rl stage that did it: walks the
    chain of `model: {from_stage: ...}` back from `from_stage` (an sft on an rl policy still is one)."""
    stages = {s.name: s for s in ctx.experiment.stages}
    out: dict[str, str] = {}
    seen = set()
    while from_stage is not None and from_stage in stages and from_stage not in seen:
        seen.add(from_stage)
        stage = stages[from_stage]
        cls = STAGES.get(stage.type)
        reward = cls.selects_by(stage) if cls.trains_on_reward else None  # what an rl stage trained against
        if reward is not None and reward.type != "metric" and issubclass(scorer_class(reward.type), PMScorer):
            model = reward.model
            if reward.from_stage is not None:
                model = (ctx.produced.get(reward.from_stage, {}).get("reward_model") or {}).get("name")
            if model:
                out[str(Path(model).resolve())] = stage.name
        from_stage = ctx.experiment.stage_model(stage).from_stage
    return out


def pm_guards(scorer: Any, ctx: ScoringContext, what: str, policy_from: str | None) -> list[Guard]:
    """Warnings for a row whose selector or reward is a PM: a PM that did not beat chance on its
    held-out pairs, and a PM the scored policy was RL-trained against (it learned to please that
    PM, so its scores overstate). `what` names the scored thing, e.g. "the selection"."""
    if not isinstance(scorer, PMScorer):
        return []
    guards = []
    held = scorer.held_out
    if held is not None and held.get("level") != "ok":
        source = f"stage '{scorer.from_stage}'" if scorer.from_stage else scorer.config.model
        guards.append(Guard("pm_beats_chance", "warn", f"{what} is made by the PM of {source}, which is not clearly "
                            f"above chance on its held-out pairs ({held.get('message', '').split(':')[0]}): "
                            f"this row ranks by noise; train a better PM first", held.get("value")))
    rl = trained_against(ctx, policy_from).get(pm_name(scorer) or "")
    if rl is not None:
        guards.append(Guard("pm_trained_against", "warn", f"{what} is scored by the PM this policy was trained "
                            f"against (stage '{rl}' optimised it for this PM): its PM scores overstate what it "
                            f"learned; score it with another PM, a judge or the task metric", 1.0))
    return guards


class PMConfig(SequenceModelConfig):
    type: Literal["pm"] = "pm"
    model: str | None = None
    """A local folder or a hub id of a reward model (AutoModelForSequenceClassification with one
    output); or leave it out and name the reward_model stage that trained one in `from_stage`."""
    from_stage: str | None = None
    """Use the PM an earlier reward_model stage trained (e.g. `from_stage: reward_model`)."""
    reference: str = "I'm sorry, I can't help with that."
    """The response every completion is compared with, in the same context. A refusal is a good
    default for helpfulness PMs; for other PMs pick a plausible middling answer."""
    template: Template | None = None
    """None: the task prompt and the response as a conversation, rendered as the PM was trained
    (its chat template, or a Human/Assistant transcript without one). Or a template as for the
    classifier, read as plain text (with EOS, as trl trains on plain text)."""

    @model_validator(mode="after")
    def _one_source(self) -> "PMConfig":
        if (self.model is None) == (self.from_stage is None):
            raise ValueError("needs exactly one of `model:` (a reward model's folder or hub id) and "
                             "`from_stage:` (a reward_model stage), e.g. {type: pm, from_stage: reward_model}")
        return self


class PMScorer(Scorer):
    Config = PMConfig
    # The value is a probability made from the *reward model's* logits; it never reads the scored
    # policy's token probabilities, so it stays a valid reward for an RL-trained policy.
    needs_probabilities = False

    def __init__(self, config: PMConfig, ctx: ScoringContext):
        if config.from_stage is not None:
            made = ctx.produced.get(config.from_stage, {}).get("reward_model")
            if made is None:
                raise ConfigError(f"stage '{config.from_stage}' has not produced a reward model",
                                  field="from_stage", fix="name a reward_model stage that comes earlier "
                                  "in `stages:` (and is not skipped)")
            config = config.model_copy(update={"model": made["name"]})
        super().__init__(config, ctx)
        if config.template is not None:
            check_template(config.template, ctx, "template")
        self.from_stage = config.from_stage
        self.held_out = held_out_verdict(config.model)
        """The beats_chance guard of the reward_model stage that trained this PM, if ladder did."""
        self.reader = PMReader(config)
        self.model = self.reader.model
        if self.model.num_labels != 1:
            raise ConfigError(f"'{config.model}' has {self.model.num_labels} outputs; a preference model has "
                              f"one (num_labels=1)", field="model",
                              fix="use a reward model, or `type: classifier` with a `label:` for a classifier")

    def conversation(self, ex: Example, response: str) -> Any:
        """What the PM reads for a response to an example: the task prompt and the response as a
        conversation, or the filled template as plain text."""
        if self.config.template is not None:
            return self.fill(self.config.template, ex, response)
        return [m.to_dict() for m in [*self.task.render(ex), Message("assistant", response)]]

    def text(self, ex: Example, response: str) -> str:
        return self.reader.texts([self.conversation(ex, response)])[0]

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        responses = [self.conversation(ex, c) for ex, c in zip(examples, completions)]
        references = [self.conversation(ex, self.config.reference) for ex in examples]
        # One pass over both; the reference text repeats per example and is scored once.
        rewards = self.reader.rewards(responses + references)
        out = []
        # softmax([s, r])[0] = sigmoid(s - r)
        for s, r in zip(rewards[:len(responses)], rewards[len(responses):]):
            out.append(Score(sigmoid(s - r), meta={"reward": s, "reference_reward": r}))
        return out
