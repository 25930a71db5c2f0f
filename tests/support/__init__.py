"""Shared test support: helpers (tolerances, random weights and inputs,
checkpoint writers), hand-made pickles, the independent PyTorch references
(ResNet/FCN/DeepLabV3, DRN, GoogLeNet and their shared blocks) and the
cross-backend worker run in subprocesses."""
