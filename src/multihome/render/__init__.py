"""PURE renderers: the plan as text for other tools (ip commands now; network stacks later)."""
