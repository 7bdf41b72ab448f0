"""Task families: one module per simulator, each declaring ``TASKS`` and one ``VIEW``."""
