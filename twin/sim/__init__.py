"""The fleet simulator: normal physics, injected faults with exact ground truth.

`FleetSim(fleet, scenario, seed).step()` gives one report per robot; see
`engine` for the order of work, `physics` for normal behaviour, `faults` for
what each fault changes, `scenario` for the YAML format.
"""

from twin.sim.engine import FleetSim
from twin.sim.scenario import FAULT_TYPES, Scenario, load_scenario

__all__ = ["FAULT_TYPES", "FleetSim", "Scenario", "load_scenario"]
