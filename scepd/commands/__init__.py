"""Command implementations; ``scepd.cli`` imports each only when it runs."""
