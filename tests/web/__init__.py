"""Tests of the customers' pages, over HTTP and in a real browser."""
