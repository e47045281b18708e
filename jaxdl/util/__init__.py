"""Small helpers every layer may use: pytree paths and masks, spec strings, a restricted unpickler."""
