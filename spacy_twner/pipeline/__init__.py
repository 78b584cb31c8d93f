"""What ships inside en_twner: one file per registered piece of the pipeline.

The package step copies every module of this folder into the wheel
(`spacy package --code`), where each is imported as a top-level module of
en_twner. So a file here imports nothing from spacy_twner, nor from its
neighbours: they meet through registry names in the config
(tests/test_registry.py checks both).
"""
