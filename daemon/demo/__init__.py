"""The bundled demo workload: access-log analytics that the daemon optimises while it runs.

``logstats`` is the target, ``oracle`` its frozen copy, ``workload`` the threads
that drive it. Nothing is imported here, so importing ``daemon.demo.logstats``
(as the shadow worker does) loads nothing else.
"""
