"""Hostile input: definitions and requests built to crash, hang or exhaust Tideflow."""
