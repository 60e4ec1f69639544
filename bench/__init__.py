"""``llm-gateway bench``: side-by-side performance numbers measured in one run."""
