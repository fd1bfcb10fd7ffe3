"""Using a trained model: prediction from a model or a ``.rpg`` file (:mod:`.predict`) and
out-of-distribution evaluation (:mod:`.ood`)."""
