"""The course's datasets, one module each, and where their files are found.

* :mod:`~prunekit.datasets.files`: the folders searched, checked downloads, the "not found" message;
* :mod:`~prunekit.datasets.mnist`, :mod:`~prunekit.datasets.cifar`, :mod:`~prunekit.datasets.shakespeare`:
  each reads its official files into arrays (or, for the text, a :class:`CharDataset`).

Training code uses :func:`prunekit.data.load_dataset`, which turns these arrays into torch Datasets.
"""
