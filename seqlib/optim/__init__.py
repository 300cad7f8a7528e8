"""Optimizers and learning-rate schedulers with PyTorch's update rules and arguments."""

from seqlib.optim import lr_scheduler
from seqlib.optim.adam import Adam, AdamW
from seqlib.optim.optimizer import Optimizer
from seqlib.optim.rmsprop import RMSprop
from seqlib.optim.sgd import SGD
