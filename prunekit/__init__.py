"""prunekit: the companion library of the pruning course.

One idea per module; read them in this order:

==============================  ==============================================================
``prunekit.data``               MNIST / CIFAR-10 / Tiny Shakespeare as Datasets; splits and loaders
``prunekit.datasets``           their files: found locally first (offline), one reader per dataset
``prunekit.models``             LeNet-300-100, LeNet-5, a small VGG, ResNet-20
``prunekit.train``              train / evaluate / fine_tune, seeding, device choice, weight averaging
``prunekit.zoo``                pretrained checkpoints shipped with the course
``prunekit.masks``              scores -> 0/1 masks (exact top-k, threshold, N:M)
``prunekit.criteria``           weight scores: |w|, w², random, gradient, Taylor, OBD, movement, Wanda
``prunekit.gradient_statistics`` gradients, their squares, the Fisher diagonal: one pass over batches
``prunekit.activations``        forward hooks that collect activation statistics
``prunekit.channel_criteria``   neuron/channel scores: norms, APoZ, mean activation, Taylor, BN γ, FPGM
``prunekit.pruning``            masks on a model: layer-wise, global, kept through training
``prunekit.dependency``         which layers share channels (residual additions -> groups)
``prunekit.surgery``            physically remove neurons and channels: a smaller, faster model
``prunekit.schedules``          one-shot, iterative, gradual (AGP) pruning; stopping rules
``prunekit.lottery``            lottery tickets with rewinding, and their controls
``prunekit.regularizers``       L1, group lasso, BN-γ L1 (network slimming), proximal steps
``prunekit.sensitivity``        per-layer sensitivity scans; uniform / ERK / tolerance allocations
``prunekit.channel_plans``      channels kept per dependency group, set to a MAC budget
``prunekit.zoo_pruned``         the zoo's pruned checkpoints (95 % sparse LeNets, smaller CIFAR nets)
``prunekit.zoo_cpu_time``       what a GPU-made zoo recipe costs on a CPU, from timed steps
``prunekit.measure``            map of: counting (parameters, nonzeros, MACs), sizes (bytes on
                                disk), latency (seconds per batch)
``prunekit.compression``        map of: quantization (symmetric/affine, BN folding), sharing
                                (k-means), distillation, encoding (Huffman, the compressed file)
``prunekit.chargpt``            CharGPT: a small decoder-only transformer (Lab 7's model)
``prunekit.language``           next-character loss, perplexity, the language-model training loop
``prunekit.zoo_language``       the zoo's CharGPT trained on Tiny Shakespeare, and its command
``prunekit.sparsegpt``          SparseGPT: one-shot pruning with column-wise OBS weight repair
``prunekit.heads``              attention heads and MLP neurons of a transformer: scored, removed
``prunekit.plots``              the course's figures
``prunekit.widgets``            ipywidgets explorers (sparsity, schedules, masks)
``prunekit.bench``              ``python -m prunekit.bench``: speed of pruning and of pruned models
``prunekit.bench_pruned``       ``python -m prunekit.bench_pruned``: a pruned model's speed-up vs its MACs
``prunekit.notebook``           fast/full mode, seeding and timing helpers for the notebooks
``prunekit.checks``             the labs' automatic checks and reference implementations
``prunekit.release``            ``python -m prunekit.release``: labs/ generated from solutions/
``prunekit.grade``              ``python -m prunekit.grade``: grade submitted notebooks
==============================  ==============================================================
"""

__version__ = "0.1.0"
