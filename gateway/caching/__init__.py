"""The exact response cache: repeatable requests answered without running the engine."""
