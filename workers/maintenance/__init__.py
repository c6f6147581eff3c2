"""Upkeep of a running fleet: episodes and facts, the reconciler, the beat schedule."""
