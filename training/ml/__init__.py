"""The machine-learning side of training and prediction.

Everything that imports torch lives in this package. The web app imports it
only inside the worker task and the prediction code path, never at start-up.
"""
