"""A ground-truth virtual organoid: a bursting spiking network under an MEA, with its own physics.

Three independent parts, each in its own module:

- :mod:`.network` - a few thousand adaptive leaky integrate-and-fire neurons (80 % excitatory)
  with Tsodyks-Markram short-term depression and distance-dependent connections, placed in 2-D
  under the electrodes, simulated in torch (batched trials). It bursts every few seconds with
  low rates in between, like the cortical cultures in ``../shared/data/real``.
- :mod:`.physics` - how a pulse activates neurons: axonal and somatic threshold charge growing
  with distance (current-distance law), direct spikes 2-6 ms after the pulse. It shares nothing
  with the model's :class:`~organoid_sim.nn.stim_coupling.StimulusCoupling`, so fitting a
  model to it is an honest test.
- :mod:`.observe` - the recording model: each electrode picks up nearby neurons as one
  multi-unit channel, detection falling with distance, artefact blanking after pulses.

:class:`VirtualOrganoid` ties them together: ``spontaneous(duration_s, seed)``,
``stimulate(events, seed=...)`` and ``true_responses(...)`` (response probability and median
first-spike latency per electrode x amplitude x channel from many independent trials).
:func:`write_data_samples` (``python -m organoid_sim.synthetic --out data_samples``) writes the
bundled sample files.
"""

from .network import Network, NetworkConfig
from .observe import RecordingConfig, RecordingModel
from .organoid import RESPONSE_WINDOW, OrganoidConfig, TrueResponses, VirtualOrganoid, grid_electrodes
from .physics import PhysicsConfig, StimPhysics
from .samples import calibration_events, load_true_responses, write_data_samples

__all__ = ["VirtualOrganoid", "OrganoidConfig", "NetworkConfig", "PhysicsConfig", "RecordingConfig", "Network",
           "StimPhysics", "RecordingModel", "TrueResponses", "grid_electrodes", "RESPONSE_WINDOW",
           "calibration_events", "write_data_samples", "load_true_responses"]
