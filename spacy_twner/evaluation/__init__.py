"""Scoring: NER on test with intervals and calibration, STSb of the sentence encoders, run tables for the docs."""
