"""Synthetic flows of a monitored site with the study's populations, and their ground truth."""

from .site_sim import POPULATIONS, SimulationConfig, SimulationError, SimulationSummary, simulate

__all__ = ["POPULATIONS", "SimulationConfig", "SimulationError", "SimulationSummary", "simulate"]
