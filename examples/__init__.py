"""Runnable examples, one a scenario: python -m examples.NAME (docs/own_models.md walks through them)."""
