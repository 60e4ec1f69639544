"""Models served by an external OpenAI-compatible upstream (overflow to a managed API)."""
