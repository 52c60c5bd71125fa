"""The bundled demo workload: access-log analytics that selfmod optimises while it runs.

A workload like any user's app, found through ``workload.app`` in
``config/selfmod.yaml`` (``demo.workload:main``); it imports nothing of
selfmod. ``logstats`` is the target, ``oracle`` its frozen copy, ``workload``
the threads that drive it. Nothing is imported here, so importing
``demo.logstats`` (as the shadow worker does) loads nothing else.
"""
