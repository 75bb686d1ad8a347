"""Synthetic flows of a monitored site with the study's populations, and their ground truth."""

from .model import POPULATIONS, SimulationConfig, SimulationError
from .site_sim import SimulationSummary, simulate

__all__ = ["POPULATIONS", "SimulationConfig", "SimulationError", "SimulationSummary", "simulate"]
