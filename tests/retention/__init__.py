"""Tests of service/retention."""
