"""Skills that ship with victor-fleet; each is declared in ``tasks.catalog``."""
