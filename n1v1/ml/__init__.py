"""Machine learning for N1V1: features, labels, splits, scaling, torch models, training, a model
registry, inference and evaluation (docs/ml/).

Submodules are deliberately not imported here: `n1v1.ml.features` and friends are pure NumPy and
load in milliseconds, while the model, inference and training modules pull in torch (and Ray for
training). Importing this package must stay cheap, so import the submodule you need.
"""
