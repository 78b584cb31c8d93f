"""Data in and out: WNUT CoNLL and the check set, corpora without test text, the datasets, STSb, the assets."""
