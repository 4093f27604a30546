"""Node types of the ai family (being written)."""
