"""Reports about scored batches: `score --report PATH.html` (a self-contained page per batch)."""
