"""One experiment engine for campaigns and for models: assignment, metrics, statistics.

A leaf package (it imports nothing of ours), so the CRM's campaigns and the training loop's
champion/challenger split share the same assignment, SRM check and sequential test.
See experiments/README.md.
"""
