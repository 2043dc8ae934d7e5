"""The simulated dual-pixel rig (``sim://``): scenes, half-aperture PSFs, camera, VCM.

Importing ``hil_af.sim.rig`` registers the ``sim`` scheme; see its header for
the URL grammar and ``docs/sim.md`` for the model.
"""
