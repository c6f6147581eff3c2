"""Metrics: registry, histograms, process memory, the store, the reporter, fleet figures, alerts."""
