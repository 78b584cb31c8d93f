"""What ships inside en_twner: one file per registered piece of the pipeline.

The package step copies every module of this folder into the wheel
(`spacy package --code`), where spaCy's generated `__init__.py` imports each
as `en_twner.<module>`. So a file here imports nothing from spacy_twner, and
nothing from its neighbours but `registration` (relatively, which works in
both homes): they meet through registry names in the config
(tests/test_registry.py checks both). Why several copies of one factory can
share a process: registration.py.
"""
