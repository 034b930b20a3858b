"""Scripts the tests run in a fresh Python process, most of them in Blender (the bpy wheel).

bpy cannot be re-initialised inside one process, and the installed extension must be checked in a
Blender that never imported the repository's add-on, so these run as subprocesses: each ``scenario_*.py``
is started by path (never collected by pytest) and prints its findings as one ``RESULT {json}`` line
that the calling test asserts on. The extension scenarios share :mod:`extension` (install the built zip,
real ``avatex serve`` backends, the timer-tick loop) and are started through its command line; see
``tests/helpers/scenarios.py``.
"""
