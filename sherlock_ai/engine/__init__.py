"""The measurement engine: spans, RSS and tracemalloc figures, and the Measurement record."""
