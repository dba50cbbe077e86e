"""Per-case parity numbers collected during a run (printed by the parity conftest)."""

RESULTS: list[tuple[str, float, float]] = []
