"""Tests of service/platform."""
