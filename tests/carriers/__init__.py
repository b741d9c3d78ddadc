"""Tests for the carrier adapters."""
