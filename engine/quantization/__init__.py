"""Quantized variants of served models: recipes, calibration data, the worker, hardware checks.

``recipes`` and ``calibration`` are plain Python so both environments can import them: the
gateway's (vLLM) and ``.venv-quant`` (llmcompressor), where ``worker`` runs.
"""
