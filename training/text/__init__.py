"""Neural text models trained from our own corpora: tokenizer, BERT-BiLSTM heads, training loop.

Nothing here downloads pretrained weights: every vocabulary and encoder is built from the
validated datasets, so a run is reproducible offline and owes nothing to an external hub.
"""
