"""Evaluation: topology metrics of predictions against references (``evaluate``) and paired statistics between
methods (``compare``)."""
