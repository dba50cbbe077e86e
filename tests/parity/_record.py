"""Per-case parity numbers collected during a run (written to a file by the parity conftest)."""

RESULTS: list[tuple[str, float, float]] = []
