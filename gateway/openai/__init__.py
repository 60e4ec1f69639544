"""The OpenAI contract: request bodies as clients send them (``bodies``, ``tool_bodies``) and
response shapes as clients read them (``shapes``). Pydantic lives at this edge only."""
