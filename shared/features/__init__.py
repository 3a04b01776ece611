"""Feature specs and their one implementation each (batch and streaming)."""
