"""pm: a preference (reward) model, calibrated against a reference response.

A PM's raw score has no meaning across contexts: one prompt's responses may all score 3.1,
another's −7. So each response is scored beside a fixed reference response *in the same context*,
and the score is softmax([s_response, s_reference])[0] — under the Bradley-Terry model PMs are
trained with, the probability that the response is preferred to the reference. It lies in (0, 1),
compares across prompts, and 0.5 means "as good as the reference".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

from pydantic import model_validator

from ladder.errors import ConfigError
from ladder.scorers import Scorer, Template, check_template
from ladder.scorers.classifier import SequenceModel, SequenceModelConfig, sigmoid
from ladder.types import Example, Message, Score

if TYPE_CHECKING:
    from ladder.stages import StageContext

PLAIN = "{prompt}\n\n{completion}"


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
    """None: the PM's own chat template over the task prompt and the response (or
    '{prompt}\\n\\n{completion}' when it has none). Or a template as for the classifier."""


    @model_validator(mode="after")
    def _one_source(self) -> "PMConfig":
        if (self.model is None) == (self.from_stage is None):
            raise ValueError("needs exactly one of `model:` (a reward model's folder or hub id) and "
                             "`from_stage:` (a reward_model stage), e.g. {type: pm, from_stage: reward_model}")
        return self


class PMScorer(Scorer):
    Config = PMConfig
    # The value is a probability made from the *reward model's* logits, which Bradley-Terry
    # training calibrates; it never reads the scored policy's token probabilities, so it stays a
    # valid reward for an RL-trained policy.
    needs_probabilities = False

    def __init__(self, config: PMConfig, ctx: StageContext):
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
        self.model = SequenceModel(config)
        if self.model.num_labels != 1:
            raise ConfigError(f"'{config.model}' has {self.model.num_labels} outputs; a preference model has "
                              f"one (num_labels=1)", field="model",
                              fix="use a reward model, or `type: classifier` with a `label:` for a classifier")
        self.use_chat = config.template is None and self.model.has_chat_template

    def text(self, ex: Example, response: str) -> str:
        if self.use_chat:
            messages = [*self.task.render(ex), Message("assistant", response)]
            return self.model.chat([m.to_dict() for m in messages])
        return self.fill(self.config.template or PLAIN, ex, response)

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        responses = [self.text(ex, c) for ex, c in zip(examples, completions)]
        references = [self.text(ex, self.config.reference) for ex in examples]
        # One pass over both; the reference text repeats per example and is scored once.
        logits = self.model.logits(responses + references, special_tokens=not self.use_chat)
        out = []
        # softmax([s, r])[0] = sigmoid(s - r)
        for (s,), (r,) in zip(logits[:len(responses)], logits[len(responses):]):
            out.append(Score(sigmoid(s - r), meta={"reward": s, "reference_reward": r}))
        return out
