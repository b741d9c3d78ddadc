"""Tests for outbound mail: composition, DSN, DKIM and transports."""
