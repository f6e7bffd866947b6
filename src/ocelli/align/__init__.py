"""Preference alignment and hallucination mitigation."""
