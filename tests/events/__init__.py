"""Tests of service/events."""
