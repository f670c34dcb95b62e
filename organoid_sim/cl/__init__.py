"""Run Cortical Labs cl-sdk scripts on a fitted model: a cl-sdk simulator data source.

cl-sdk (PyPI ``cl-sdk``, Python >= 3.12, licence CC BY-NC 4.0: the optional extra ``cl``) runs a
CL1 script against a simulator whose data comes from a pluggable source. This package is such a
source, backed by a model saved with ``model.save(MODEL_DIR)``::

    CL_SDK_DATA_SOURCE=organoid_sim.cl:source \\
    CL_SDK_DATA_SOURCE_CONFIG='{"model": "MODEL_DIR", "seed": 0}' \\
    CL_SDK_ACCELERATED_TIME=1 python my_cl_script.py

or, inside a script, ``cl.sim.set_simulator_data_source("organoid_sim.cl:source", config={...})``.
The script itself is unchanged: ``cl.open()``, ``neurons.stim``, ``neurons.loop``, ``record`` ... .

What the script sees:

- **spikes** of the model's recorded units on their CL channels (:mod:`.channels`: the mapping from
  the model's electrode layout to the 8 x 8 array's channel numbers; channels without a unit carry
  noise only), as cl-sdk spikes with waveform snippets, and int16 **frames** of noise plus the
  spike waveforms (:mod:`.signal`), so cl's ``tick.analysis``, ``record()``, ``RecordingView``
  analyses and the visualisation work as on the rig;
- every committed **stim** reaches the model through its fitted stimulus coupling at the pulse's
  timestamp (first-phase current and phase duration of the pulse's ``StimDesign``), with its
  response only after it and never before what cl has already read (:mod:`.stream`);
- wall-clock mode (cl-sdk's default) and accelerated mode (``CL_SDK_ACCELERATED_TIME=1``: as fast
  as the model runs); the same ``seed`` gives the same spikes for the same stims.

Config keys (``CL_SDK_DATA_SOURCE_CONFIG`` JSON / ``config=``): ``model`` (directory, required),
``seed`` (0), ``channel_map`` (``{electrode_id: channel}``), ``noise_uv`` (2.5), ``spike_uv`` (60),
``dt_ms`` (the model's step). Only NumPy, numba, safetensors (and cl-sdk) are needed: no torch.
"""

from __future__ import annotations

from .channels import ChannelMapping, map_channels
from .stream import ModelStream

__all__ = ["source", "ModelStream", "map_channels", "ChannelMapping"]


def source(model: str, seed: int = 0, channel_map=None, noise_uv: float = 2.5, spike_uv: float = 60.0,
           dt_ms: float | None = None):
    """cl-sdk data source factory (``organoid_sim.cl:source``): a saved model as the simulated CL1.

    Parameters
    ----------
    model : directory of a saved ``SpikingNetworkModel`` (``model.save(dir)``).
    seed : seed of the model's noise, spike placement and signal noise.
    channel_map : optional ``{electrode_id: channel}`` (see :mod:`organoid_sim.cl.channels`).
    noise_uv : noise standard deviation (uV).
    spike_uv : spike trough depth (uV).
    dt_ms : model step (ms); default the model's.

    Returns
    -------
    organoid_sim.cl.datasource.ModelDataSource (a ``cl.sim.SimulatorDataSource``)
    """
    try:
        from .datasource import ModelDataSource
    except ImportError as exc:  # cl-sdk missing (it needs Python >= 3.12)
        raise ImportError("organoid_sim.cl:source needs cl-sdk (pip install 'organoid-sim[cl]', "
                          f"Python >= 3.12): {exc}") from None
    return ModelDataSource(model, seed=seed, channel_map=channel_map, noise_uv=noise_uv, spike_uv=spike_uv,
                           dt_ms=dt_ms)
