"""The Keras 3 front end: Keras's kernel layouts (:mod:`.layouts`) and activations
(:mod:`.activations`), the catalog as Keras initializers (:mod:`.initializers`), a model's
layers read for the classic schemes (:mod:`.settle`), its torch twin for every other scheme
(:mod:`.twin`), and plans written into its variables (:mod:`.write`). The public functions are
in :mod:`weightinit.keras`. Importing these modules imports Keras (the ``keras`` extra)."""
