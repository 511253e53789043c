"""Near copies, a channel of their own: which catalogue track a clip copies, transposed, re-timed or remixed.

The credits come from the model's loss, and a transposed copy is invisible to it (the autoencoder encodes a
+1 semitone copy nearest its source 3 times in 24 on the demo). This channel never asks the model: it
compares key- and tempo-invariant fingerprints of the audio (:mod:`.fingerprint`), built with the index
(:mod:`.build`), searched with FAISS and verified by aligning spectral peaks (:mod:`.search`,
:mod:`.verify`). Its result is a list beside the credits, not a credit (docs/near-copies.md).
"""
