"""Tests of service/contact."""
