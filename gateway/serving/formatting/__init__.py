"""The format step: a run's outputs as OpenAI bodies, whole or as stream chunks."""
