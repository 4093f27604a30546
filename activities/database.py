"""Node types of the database family (being written)."""
