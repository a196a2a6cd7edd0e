"""Leg-fatigue risk scoring."""
