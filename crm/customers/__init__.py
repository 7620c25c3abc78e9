"""Customers: the 360 view from the feature store, and what the conversation adds to it."""
