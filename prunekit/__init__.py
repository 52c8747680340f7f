"""prunekit: the companion library of the pruning course.

One idea per module:

========================  ==========================================================
``prunekit.data``         MNIST / CIFAR-10 from local files first (offline friendly)
``prunekit.models``       LeNet-300-100, LeNet-5, a small VGG, ResNet-20
``prunekit.train``        train / evaluate / fine_tune, seeding, device choice
``prunekit.zoo``          pretrained checkpoints shipped with the course
``prunekit.masks``        scores -> 0/1 masks (exact top-k, threshold, N:M)
``prunekit.pruning``      masks on a model: layer-wise, global, kept through training
========================  ==========================================================
"""

__version__ = "0.1.0"
