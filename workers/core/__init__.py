"""The bottom layer: errors, settings, Redis keys and clients, path confinement, names."""
