"""How long a local model's content fingerprint takes: the first time (every byte read), and
again in a new process (the on-disk memo, keyed by path, size, mtime, ctime and inode).

    python scripts/bench_fingerprint.py [MiB]      (default 512: a 0.25B-parameter bf16 model)

The last line prints both and the load average."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import ladder.digests as digests
from ladder.backends.hf import HFBackend, HFConfig


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LADDER_CACHE_DIR"] = str(Path(tmp) / "cache")
        (Path(tmp) / "cache").mkdir()  # the memo lives beside an existing model-call cache
        model = Path(tmp) / "model"
        (model / "nested").mkdir(parents=True)
        with open(model / "model.safetensors", "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        for name in ("config.json", "tokenizer.json", "nested/extra.json"):
            (model / name).write_text("{}")
        started = time.perf_counter()
        first = HFBackend(HFConfig(name=str(model))).fingerprint
        cold = time.perf_counter() - started
        digests._MEMO.clear()  # what a new process starts with
        started = time.perf_counter()
        again = HFBackend(HFConfig(name=str(model))).fingerprint
        warm = time.perf_counter() - started
        assert first == again
    print(f"fingerprint of a {mib} MiB model: cold {cold:.2f} s, memoised {warm * 1000:.1f} ms "
          f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
