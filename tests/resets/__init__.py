"""Tests of service/resets."""
