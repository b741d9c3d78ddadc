"""Fake external services (real servers on loopback) for tests."""
