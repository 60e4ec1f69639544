"""LoRA adapters for served models: the project's own think adapter (data made here,
trained with peft on CPU) and the adapters shipped with the project."""
