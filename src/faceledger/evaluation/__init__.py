"""faceledger.evaluation: measure what the face engine gets wrong, and for whom.

* :mod:`.metrics`: pure numpy (no I/O): verification (10-fold accuracy, ROC/DET, EER, TAR@FAR with
  Clopper-Pearson intervals), 1:N identification (FNIR/FPIR), per-group rates and differentials.
* :mod:`.datasets`: LFW ``pairs.txt``, person folders, group CSVs.
* :mod:`.embed`: embeddings through :func:`faceledger.vision.default_engine`, cached on disk.
* :mod:`.report`: ``report.json`` and a self-contained HTML report (inline PNG plots).
* :mod:`.run`: the ``faceledger eval verify|identify|calibrate`` procedures.
"""
