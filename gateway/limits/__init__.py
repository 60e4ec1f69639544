"""Rate limits and budgets enforced before dispatch (in-process or shared through Redis)."""
