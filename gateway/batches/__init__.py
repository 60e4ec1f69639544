"""Batch inference: the OpenAI Files and Batches API, run on our own engine in the background."""
