"""Node types of the documents family (being written)."""
