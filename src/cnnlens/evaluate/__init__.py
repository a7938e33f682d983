"""Evaluate a classifier on a dataset: predictions, metrics (scikit-learn), misclassification groups."""

from cnnlens.evaluate._evaluation import Evaluation
from cnnlens.evaluate._groups import Groups
from cnnlens.evaluate._run import evaluate
from cnnlens.evaluate._save import save_evaluation

__all__ = ["Evaluation", "Groups", "evaluate", "save_evaluation"]
