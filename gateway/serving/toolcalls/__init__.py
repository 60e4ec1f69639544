"""Reading tool calls out of generated text: forced (named, required) and parsed (auto)."""
