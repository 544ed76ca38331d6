"""Tests of service/accounts."""
