"""Evaluate a classifier on a dataset: predictions, metrics (scikit-learn), misclassification groups."""

from cnnlens.evaluation._evaluation import Evaluation
from cnnlens.evaluation._groups import Groups
from cnnlens.evaluation._run import evaluate
from cnnlens.evaluation._save import save_evaluation

__all__ = ["Evaluation", "Groups", "evaluate", "save_evaluation"]
