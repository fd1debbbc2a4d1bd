"""Test helpers for ladder: a fake OpenAI/Anthropic HTTP server (`ladder.testing.fake_api`)."""
