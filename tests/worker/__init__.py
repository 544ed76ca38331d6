"""Tests of service/worker."""
