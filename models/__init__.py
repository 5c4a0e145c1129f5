"""Generators and fetchers of real and synthetic models (no binary model files live in git)."""
