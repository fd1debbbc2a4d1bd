"""LoRA adapter settings, shared by the stages that train (sft, rl, reward_model)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ladder.config import Section


class LoraSettings(Section):
    r: int = Field(16, ge=1)
    """Rank of the low-rank update. 8-64 is usual; higher learns more and costs more memory."""
    alpha: float = Field(32, gt=0)
    """Scale of the update (lora_alpha); the effective scale is alpha / r."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input. 0.05-0.1 helps large models on small data; 0 learns fastest."""
    target_modules: str | list[str] = "all-linear"
    """Modules that get adapters: 'all-linear' (every linear layer but the output head) or names
    like [q_proj, v_proj]."""
    modules_to_save: list[str] | None = None
    """Modules trained in full beside the adapters, e.g. [embed_tokens] when the task needs words
    the model barely knows (LoRA alone cannot move their embeddings)."""

    def peft_kwargs(self) -> dict[str, Any]:
        """The settings under peft's LoraConfig names (what a training spec carries)."""
        return {"r": self.r, "lora_alpha": self.alpha, "lora_dropout": self.dropout,
                "target_modules": self.target_modules, "modules_to_save": self.modules_to_save}
