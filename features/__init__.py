"""The Feast feature repo (feature_store.yaml + definitions.py) and the code that feeds it.

Imports neither `training` nor `serving`: both depend on features, never the other way round.
"""
