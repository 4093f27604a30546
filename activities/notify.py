"""Node types of the notify family (being written)."""
