"""A backend whose answers the tests choose: named in YAML as `tests.scorers.scripted:ScriptedBackend`.

`name` picks the script:
  policy   sample i of a prompt is a label picked by a hash of (user turn, i): deterministic, so a
           greedy zero_shot call and best_of_n's sample 0 of the same prompt agree;
  judge    the user turn is looked up in VERDICTS (a judge template of "{completion}" makes it the
           completion itself): a Yes, a No and a ramble;
  rubric   the same with 1-10 ratings.
Every message list it is asked about is appended to ASKED, so tests can count real calls.
"""

from __future__ import annotations

import zlib
from typing import Callable

from ladder.backends.base import Backend, BackendConfig, Job
from ladder.config import GenerationConfig
from ladder.types import Sample

LABELS = ["positive", "negative", "neutral"]
VERDICTS = {
    "judge": {"positive": "Verdict: **Yes**.", "negative": "no, it is wrong", "neutral": "Well, it depends"},
    "rubric": {"positive": "Rating: 9/10", "negative": "[[2]]", "neutral": "eleven out of ten"},
}
ASKED: list[tuple[str, ...]] = []


class ScriptedConfig(BackendConfig):
    backend: str = "tests.scorers.scripted:ScriptedBackend"
    name: str = "policy"


class ScriptedBackend(Backend):
    Config = ScriptedConfig

    def reply(self, user: str, index: int) -> str:
        if self.config.name == "policy":
            return LABELS[zlib.crc32(f"{user}|{index}".encode()) % len(LABELS)]
        return VERDICTS[self.config.name][user]

    def sample(self, jobs: list[Job], gen: GenerationConfig,
               on_done: Callable[[int, list[Sample]], None]) -> None:
        for j, job in enumerate(jobs):
            ASKED.append(tuple(m.content for m in job.messages))
            user = job.messages[-1].content
            on_done(j, [Sample(self.reply(user, i), "eos", prompt_tokens=len(user) // 4, completion_tokens=2)
                        for i in job.indices])
