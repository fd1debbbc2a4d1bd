"""Local Hugging Face causal LMs through transformers' Auto* classes.

The same code path serves a hub id (for users with internet), a local folder, and the project's
own offline model `ladder-tiny`, which ships inside the package (scripts/build_tiny_model.py
rebuilds it). Generation is batched: prompts are sorted by length so a batch pads little, and
the n samples of a prompt are decoded together. With n > 1 each prompt is read (prefilled) once
and its KV cache repeated to the n samples (`shared_prefix`), rather than
`generate(num_return_sequences=n)` reading it n times (scripts/bench_bon_prefix.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import Field

from ladder.backends.base import Backend, BackendConfig, Job
from ladder.config import GenerationConfig
from ladder.errors import BackendError
from ladder.types import Message, Sample

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUILTIN_MODELS = {"ladder-tiny": ASSETS / "ladder-tiny"}


class HFConfig(BackendConfig):
    backend: Literal["hf"] = "hf"
    name: str = "ladder-tiny"
    """Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct), a local folder, or the built-in 'ladder-tiny'."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype; auto = bfloat16 on GPU, float32 on CPU."""
    device: str = "auto"
    """'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'."""
    batch_size: int = Field(32, ge=1)
    """Rows per generate() call (prompts × samples); lower it if memory runs out."""
    chat_template: Literal["auto", "none"] = "auto"
    """auto: use the tokenizer's chat template when it has one; none: plain completion text."""
    trust_remote_code: bool = False
    """Allow model code from the hub repository to run (only for models you trust)."""
    shared_prefix: bool = True
    """With n > 1 samples per prompt, prefill each prompt once and share its KV cache among its n
    samples (the same samples, up to float rounding, at a fraction of the prompt compute); false:
    `generate(num_return_sequences=n)`, which re-reads the prompt n times."""


def resolve_model_path(name: str) -> str:
    if name in BUILTIN_MODELS:
        path = BUILTIN_MODELS[name]
        if not (path / "config.json").exists():
            raise BackendError(f"the built-in model '{name}' is missing from {path}",
                               fix="reinstall ladder, or rebuild it with python scripts/build_tiny_model.py")
        return str(path)
    return name


WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json", "adapter_config.json",
           "*.pt", "*.pth", "*.h5", "*.msgpack", "*.gguf")
"""File names that hold (or index) a model's weights; a folder with none of them is not a model."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")


def check_model_folder(path: str, name: str) -> None:
    """A local folder named as a model must hold one: config.json, weights and a tokenizer. Said
    before anything loads (transformers' own errors for an empty folder, a lone config.json or a
    stage folder like rl/<run_id> are tracebacks about tokenizers), with the folder inside it that
    is a model when there is one (a training stage's `model/`)."""
    folder = Path(path)
    if not folder.exists():
        return  # a hub id (or a missing path, which the tokenizer's load reports)
    if not folder.is_dir():
        raise BackendError(f"model '{name}' is a file, not a model folder", where=str(folder), field="model.name",
                           fix="name the folder that holds the model's config.json, weights and tokenizer")
    missing = [what for what, ok in (
        ("config.json", (folder / "config.json").is_file()),
        ("weights (*.safetensors or *.bin)", any(next(folder.glob(g), None) for g in WEIGHTS)),
        ("tokenizer files (tokenizer.json or tokenizer_config.json)", any((folder / f).is_file() for f in TOKENIZER_FILES)),
    ) if not ok]
    if not missing:
        return
    inner = sorted(p.parent for p in folder.glob("*/config.json"))
    hint = (f"did you mean {inner[0]}? (a training stage keeps its model in the `model` folder of its run)"
            if inner else "name the folder that holds the model's config.json, weights and tokenizer "
            "(a training stage's is <results>/<experiment>/<stage>/<run_id>/model)")
    raise BackendError(f"model folder '{name}' is not a model: it has no {', no '.join(missing)}",
                       where=str(folder), field="model.name", fix=hint)


class HFBackend(Backend):
    Config = HFConfig
    supports_logprobs = True

    def __init__(self, config: HFConfig):
        super().__init__(config)
        self.path = resolve_model_path(config.name)
        self._tokenizer = None
        self._model = None
        self._fingerprint: str | None = None

    # -- loading (lazy: `ladder check` needs only the tokenizer) -------------------------------

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            _quiet_transformers()
            try:
                tok = AutoTokenizer.from_pretrained(self.path, revision=self.config.revision,
                                                    trust_remote_code=self.config.trust_remote_code)
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a folder that is not a tokenizer
                raise BackendError(f"cannot load tokenizer of '{self.config.name}' ({_first_line(exc)})",
                                   field="model.name",
                                   fix="check the hub id or local path (offline, only local folders "
                                       "and the built-in 'ladder-tiny' load)") from None
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            tok.padding_side = "left"
            self._tokenizer = tok
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            device = self.config.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = self.config.dtype
            if dtype == "auto":
                dtype = "bfloat16" if device.startswith("cuda") else "float32"
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    self.path, revision=self.config.revision, dtype=getattr(torch, dtype),
                    trust_remote_code=self.config.trust_remote_code)
            except OSError as exc:
                raise BackendError(f"cannot load model '{self.config.name}' ({_first_line(exc)})",
                                   field="model.name", fix="check the hub id or local path") from None
            self._model = model.to(device).eval()
        return self._model

    @property
    def rl_policy(self) -> bool:
        """Whether this model was RL-trained by ladder's rl stage (its model folder says so), so its
        probabilities are not calibrated."""
        from ladder.marker import is_rl_policy

        return is_rl_policy(self.path)

    def preflight(self) -> None:
        check_model_folder(self.path, self.config.name)
        self.tokenizer  # noqa: B018 - loads it: a wrong name fails here, before results are written

    @property
    def fingerprint(self) -> str:
        """A local folder is identified by its contents (every file, nested ones too), not by its
        name or timestamps: a checkpoint re-trained in place, or a file swapped for another of the
        same size and mtime, is another model; the same files in another clone are the same one.
        Digests are memoised by (path, size, mtime, ctime, inode), so this stays fast. A hub id is
        its name and revision."""
        if self._fingerprint is None:
            path = Path(self.path)
            if path.is_dir():
                from ladder.digests import path_digest

                self._fingerprint = f"sha256:{path_digest(path)[:16]}"
            else:
                self._fingerprint = f"{self.config.name}@{self.config.revision or 'main'}"
        return self._fingerprint

    @property
    def context_window(self) -> int:
        n = getattr(self.tokenizer, "model_max_length", None)
        if n and n < 1_000_000:
            return int(n)
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(self.path, revision=self.config.revision,
                                         trust_remote_code=self.config.trust_remote_code)
        return int(getattr(cfg, "max_position_embeddings", 2048))

    # -- prompts --------------------------------------------------------------------------------

    @property
    def uses_chat_template(self) -> bool:
        return self.config.chat_template == "auto" and bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, messages: Sequence[Message]) -> str:
        """The exact text the model sees: its chat template, or plain completion text."""
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template([m.to_dict() for m in messages],
                                                      add_generation_prompt=True, tokenize=False)
        # Plain completion: the instruction, then each turn on its own line; the answer follows.
        ends = {"system": "\n\n", "user": "\n", "assistant": "\n\n"}
        return "".join(m.content + ends[m.role] for m in messages)

    def _encode(self, texts: list[str]) -> dict[str, Any]:
        # A chat template writes its own BOS; plain text needs the tokenizer's.
        return self.tokenizer(texts, return_tensors="pt", padding=True,
                              add_special_tokens=not self.uses_chat_template)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.tokenizer(self.render(messages), add_special_tokens=not self.uses_chat_template)
                   ["input_ids"])

    # -- generation -----------------------------------------------------------------------------

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in ids + [self.tokenizer.eos_token_id] if i is not None}

    def sample(self, jobs: list[Job], gen: GenerationConfig,
               on_done: Callable[[int, list[Sample]], None]) -> None:
        import torch

        texts = [self.render(job.messages) for job in jobs]
        # Same sample count per batch (one num_return_sequences), then by length to pad little.
        order = sorted(range(len(jobs)), key=lambda j: (len(jobs[j].indices), len(texts[j])))
        batches: list[list[int]] = []
        for j in order:
            m = len(jobs[j].indices)
            if batches and len(jobs[batches[-1][0]].indices) == m and \
                    (len(batches[-1]) + 1) * m <= max(self.config.batch_size, m):
                batches[-1].append(j)
            else:
                batches.append([j])
        eos = self._eos_ids()
        for b, batch in enumerate(batches):
            m = len(jobs[batch[0]].indices)
            enc = self._encode([texts[j] for j in batch]).to(self.model.device)
            kwargs: dict[str, Any] = dict(max_new_tokens=gen.max_tokens, num_return_sequences=m,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=sorted(eos))
            if gen.temperature > 0:
                kwargs.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p, top_k=0)
                torch.manual_seed((gen.seed or 0) * 1_000_003 + b)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if gen.stop:
                kwargs.update(stop_strings=list(gen.stop), tokenizer=self.tokenizer)
            with torch.inference_mode():
                out = self._generate(enc, m, kwargs)
            new = out[:, enc["input_ids"].shape[1]:].tolist()
            prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
            for row, j in enumerate(batch):
                samples = [self._finish(new[row * m + s], gen, eos, prompt_lens[row]) for s in range(m)]
                on_done(j, samples)

    def _generate(self, enc: dict[str, Any], m: int, kwargs: dict[str, Any]):
        """generate() for one batch of `sample`: m samples of each (left-padded) prompt in `enc`,
        prompt-major; the token ids, prompt included. A subclass may watch the call (the training
        curves take the first step's logits from it, sft_local.LiveBackend)."""
        out = None
        if m > 1 and self.config.shared_prefix:
            out = self._generate_shared_prefix(enc, m, kwargs)
        if out is None and m > 1 and not kwargs.get("do_sample"):
            # generate() refuses greedy num_return_sequences > 1: repeat the rows instead.
            out = self.model.generate(**{k: v.repeat_interleave(m, dim=0) for k, v in enc.items()},
                                      **{**kwargs, "num_return_sequences": 1})
        if out is None:
            out = self.model.generate(**enc, **kwargs)
        return out

    def _generate_shared_prefix(self, enc: dict[str, Any], m: int, kwargs: dict[str, Any]):
        """generate() for m samples of each prompt in `enc`, reading each prompt once: one forward
        pass over all but the last prompt token fills a KV cache, which is repeated m times along
        the batch (sample-major within a prompt, as num_return_sequences orders rows); generate()
        then starts from it. Rows, positions, masks and random draws are those of
        generate(num_return_sequences=m), so the samples are the same up to float rounding (the
        last prompt token is computed in a separate pass). None when this model cannot (a prompt of
        one token, a cache with non-attention layers): the caller takes the plain path."""
        import inspect

        ids, mask = enc["input_ids"], enc["attention_mask"]
        if ids.shape[1] < 2:
            return None
        from transformers import DynamicCache

        model = self.model
        params = inspect.signature(model.forward).parameters
        # transformers 5 calls the argument `cache`; 4.x `past_key_values`.
        cache_arg = "cache" if "cache" in params else "past_key_values"
        try:
            cache = DynamicCache(config=model.config)
        except TypeError:  # transformers 4.x before caches took a config
            cache = DynamicCache()
        if any(getattr(cache, "is_linear", None) or ()):
            return None  # recurrent/linear-attention state is not a per-token prefix; keep it simple
        # Positions as generate() derives them from a left-padded mask.
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        extra: dict[str, Any] = {}
        for name in ("logits_to_keep", "num_logits_to_keep"):  # logits of the prefix are not needed
            if name in params:
                extra[name] = 1
                break
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
              use_cache=True, **{cache_arg: cache}, **extra)
        cache.batch_repeat_interleave(m)
        rest = {k: v for k, v in kwargs.items() if k != "num_return_sequences"}
        return model.generate(input_ids=ids.repeat_interleave(m, dim=0),
                              attention_mask=mask.repeat_interleave(m, dim=0),
                              num_return_sequences=1, **{cache_arg: cache}, **rest)

    def _finish(self, tokens: list[int], gen: GenerationConfig, eos: set[int], prompt_len: int) -> Sample:
        cut = next((i for i, t in enumerate(tokens) if t in eos), None)
        body = tokens if cut is None else tokens[:cut]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        hits = [text.find(s) for s in gen.stop if s in text]
        if hits:
            text, reason = text[:min(hits)], "stop"
        elif cut is not None:
            reason = "eos"
        else:
            reason = "length"
        n = len(body) + (1 if cut is not None else 0)
        return Sample(text=text, finish_reason=reason, prompt_tokens=int(prompt_len), completion_tokens=n)

    def continuation_logprobs(self, prompts: list[Sequence[Message]], continuations: list[str]) -> list[float]:
        import torch

        tok = self.tokenizer
        rows = self._continuation_rows(prompts, continuations)
        out: list[float] = [0.0] * len(rows)
        # One-token continuations (answer choices mostly are) need only their prompt's forward pass,
        # which the K choices of a question share: K times less compute for the chance-loss guard,
        # sft's curves and choice_prob (scripts/bench_sft.py). Longer ones take the general path.
        single = [i for i, (p, c) in enumerate(rows) if len(c) == 1 and p]
        if single:
            self._next_token_logprobs(rows, single, out)
        chosen = set(single)
        order = sorted((i for i in range(len(rows)) if i not in chosen),
                       key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start:start + self.config.batch_size]
            seqs = [rows[i][0] + rows[i][1] for i in idx]
            width = max(len(s) for s in seqs)
            pad = tok.pad_token_id
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.model.device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.model.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            for r, i in enumerate(idx):
                p_len, c_len = len(rows[i][0]), len(rows[i][1])
                target = ids[r, p_len:p_len + c_len]
                lp = logp[r, p_len - 1:p_len - 1 + c_len].gather(-1, target[:, None]).sum()
                out[i] = float(lp)
        return out

    def _continuation_rows(self, prompts: list[Sequence[Message]],
                           continuations: list[str]) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, continuation ids) per pair, as continuation_logprobs scores them."""
        tok = self.tokenizer
        special = not self.uses_chat_template
        # A prompt comes once per choice (the same object K times): render and tokenize it once.
        prompt_ids: dict[int, list[int]] = {}
        cont_ids: dict[str, list[int]] = {}
        rows = []
        for messages, cont in zip(prompts, continuations):
            if id(messages) not in prompt_ids:
                prompt_ids[id(messages)] = tok(self.render(messages), add_special_tokens=special)["input_ids"]
            if cont not in cont_ids:
                cont_ids[cont] = tok(cont, add_special_tokens=False)["input_ids"]
            rows.append((prompt_ids[id(messages)], cont_ids[cont]))
        return rows

    def continuation_token_counts(self, continuations: list[str]) -> list[int]:
        # Tokenised alone, exactly as continuation_logprobs tokenises them.
        return [len(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in continuations]

    def _next_token_logprobs(self, rows: list[tuple[list[int], list[int]]], which: list[int],
                             out: list[float]) -> None:
        """out[i] = log p(the one continuation token | prompt) for i in `which`, one forward pass
        per distinct prompt (batched, shortest first, right-padded as above)."""
        import torch

        groups: dict[tuple[int, ...], list[int]] = {}
        for i in which:
            groups.setdefault(tuple(rows[i][0]), []).append(i)
        prompts = sorted(groups, key=len)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        keep = self._logits_to_keep_arg()
        for start in range(0, len(prompts), self.config.batch_size):
            batch = prompts[start:start + self.config.batch_size]
            width = max(len(p) for p in batch)
            with torch.inference_mode():
                if keep:
                    # Left-padded, so every prompt's last token is the last position: the model
                    # computes the vocabulary-sized logits there only, not at every position (on a
                    # small model that projection is most of the pass; scripts/bench_lmeval.py).
                    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in batch], device=device)
                    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
                    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
                    last = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                      **{keep: 1}).logits[:, -1]
                else:
                    ids = torch.tensor([list(p) + [pad] * (width - len(p)) for p in batch], device=device)
                    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in batch], device=device)
                    logits = self.model(input_ids=ids, attention_mask=mask).logits
                    last = logits[torch.arange(len(batch), device=device),
                                  torch.tensor([len(p) - 1 for p in batch], device=device)]
                logp = torch.log_softmax(last.float(), dim=-1)
            # Only the wanted tokens leave the device (not a vocabulary-sized row per prompt).
            wanted = [(r, i) for r, p in enumerate(batch) for i in groups[p]]
            values = logp[torch.tensor([r for r, _ in wanted], device=device),
                          torch.tensor([rows[i][1][0] for _, i in wanted], device=device)].tolist()
            for (_, i), v in zip(wanted, values):
                out[i] = v


    def _logits_to_keep_arg(self) -> str | None:
        """The forward() argument that limits the logits to the last positions, if the model has
        one (transformers 5: logits_to_keep; some 4.x models: num_logits_to_keep)."""
        import inspect

        params = inspect.signature(self.model.forward).parameters
        return next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in params), None)


def _quiet_transformers() -> None:
    # ladder draws its own progress; transformers' load bars and long-prompt notices are noise here.
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
