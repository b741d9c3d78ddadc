"""Carrier adapters: the edge between the dispatcher and SMS providers."""
