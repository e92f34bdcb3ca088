"""Classical baselines (filled in by the baselines work)."""
