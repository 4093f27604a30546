"""Node types of the storage family (being written)."""
