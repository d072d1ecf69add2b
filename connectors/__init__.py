"""Annexa connectors: one package or module per source system."""
