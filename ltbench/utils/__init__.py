"""Small helpers every layer may use: atomic file writes, distributed rank/world."""
