"""Training a spec to the end: the engine (:mod:`.engine`: ``train``), the one loop
(:mod:`.loop`) and an epoch (:mod:`.epoch`), optimisers (:mod:`.optim`), schedules
(:mod:`.schedules`), precise batchnorm (:mod:`.precise_bn`), checkpoints and resume
(:mod:`.checkpoint`, :mod:`.resume`), guard rails (:mod:`.health`), inference timing
(:mod:`.timing`), pruning with fine-tuning (:mod:`.pruning`) and the result (:mod:`.result`)."""
