"""AutoML on feature tables (churn, repurchase): AutoGluon, its challengers, metrics, explanations.

Works on plain DataFrames (the point-in-time training sets Feast builds); it never imports the
pipelines, serving or the feature repo, so it can be tested and benchmarked on its own.
"""
