"""Monitoring of the application (issue 20): business, security, consumers, coverage, alerts."""
