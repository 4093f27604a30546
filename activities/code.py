"""Node types of the code family (being written)."""
