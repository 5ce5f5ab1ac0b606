"""Plans: the data a scheme produces (one row per parameter, with its reason), printable and
JSON-serializable, and ``Plan.apply``, the only code that writes a model's parameters."""
