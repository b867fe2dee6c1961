"""Contender programs the harness starts as fresh child processes, one per measured run."""
