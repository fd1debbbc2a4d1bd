"""Public testing aids for ladder and its plugins: `ladder.testing.fake_api.FakeAPIServer`, a fake
OpenAI/Anthropic HTTP server on 127.0.0.1 (chat, log-probabilities, files, fine-tuning jobs, and
faults on request) — like inspect_ai's mockllm model, but under the real SDKs. See
docs/extending.md, "Testing a plugin"."""
