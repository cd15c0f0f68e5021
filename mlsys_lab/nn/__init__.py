"""Neural-network layers built on the autograd Tensor (PyTorch's names and conventions).

>>> from mlsys_lab import nn
>>> nn.init.manual_seed(0)                   # reproducible initial weights
>>> model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
>>> sum(p.data.size for p in model.parameters())
9610
"""

from . import init
from .conv import AvgPool2d, Conv2d, MaxPool2d, avg_pool2d, col2im, conv2d, im2col, max_pool2d
from .layers import GELU, Dropout, Flatten, Identity, Linear, ReLU, Sequential, Sigmoid, Tanh
from .module import Module, Parameter, StateDictKeyError

__all__ = ["init", "Module", "Parameter", "StateDictKeyError", "Linear", "ReLU", "GELU", "Tanh",
           "Sigmoid", "Identity", "Flatten", "Dropout", "Sequential", "Conv2d", "MaxPool2d",
           "AvgPool2d", "conv2d", "max_pool2d", "avg_pool2d", "im2col", "col2im"]
