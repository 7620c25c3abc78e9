"""Ray Serve deployments and the SCRM adapters that call them.

Loads registered models from the MLflow registry and reads the Feast online store; never
imports training code.
"""
