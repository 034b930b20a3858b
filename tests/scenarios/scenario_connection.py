"""Installed-extension scenarios about the connection: a backend that dies and comes back, CurveZMQ keys
and the preferences' Start local backend button."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
import numpy as np
from extension import free_port

if TYPE_CHECKING:
    from extension import Extension


def dropped_backend_reconnects(ext: Extension, mesh: str) -> dict:
    mi, runtime = ext.mi, ext.runtime
    port = free_port()
    endpoint, proc = ext.serve(port=port)
    ext.use(endpoint, timeout_s=2.0)
    connected = runtime.RUNTIME.status_line()
    proc.kill()
    proc.wait(10)
    ext.servers.remove(proc)
    ext.tick_until(lambda: runtime.RUNTIME.connection_state in ("lost", "reconnecting"), 60, sleep=0.02)
    lost = runtime.RUNTIME.status_line()
    ext.serve(port=port)
    ext.tick_until(lambda: runtime.RUNTIME.connection_state == "connected", 90, sleep=0.02)
    # The reconnected client works: a small audit goes through.
    with np.load(mesh) as m:
        verts, tris = m["vertices"], m["faces"]
    gt = mi.import_mesh("gt", verts, tris, np.full((len(verts), 3), 0.5, np.float32))
    pred = mi.import_mesh("pred", verts, tris, np.full((len(verts), 3), 0.5, np.float32))
    s = bpy.context.scene.avatex
    s.audit_object, s.gt_object, s.gt_source = pred, gt, "OBJECT"
    bpy.ops.avatex.audit()
    ext.tick_until(lambda: not runtime.RUNTIME.latest("audit").active, 120)
    return {"connected": connected, "lost": lost, "again": runtime.RUNTIME.status_line(),
            "audit": runtime.RUNTIME.latest("audit").state,
            "patd_max": float(mi.read_point_floats(pred.data, "patd").max())}


def curve_keys_and_the_launcher(ext: Extension, keys: str, client_secret: str, python: str, roots: str,
                                launcher_state: str) -> dict:
    prefs = ext.prefs
    runtime = ext.runtime.RUNTIME
    server_key = f"{keys}/server.key"
    # 1. A CurveZMQ backend: refused without keys, served with them (key file, then the Z85 text).
    endpoint, _ = ext.serve("--keys", keys)
    prefs.address, prefs.timeout_s = endpoint, 3.0
    prefs.server_key, prefs.client_key = server_key, client_secret
    bpy.ops.avatex.connect()
    ext.tick_until(lambda: runtime.connection_state == "connected", 90)
    with_file = runtime.status_line()
    with open(server_key) as f:
        z85 = [ln.split('"')[1] for ln in f if "public-key" in ln][0]
    prefs.server_key = z85
    bpy.ops.avatex.connect()
    ext.tick_until(lambda: runtime.connection_state == "connected", 90)
    with_text = runtime.status_line()
    prefs.server_key = prefs.client_key = ""
    bpy.ops.avatex.connect()
    ext.tick_until(lambda: runtime.connection_state in ("lost", "reconnecting"), 60, sleep=0.02)
    without = runtime.status_line()
    # 2. The preferences' Start local backend button runs `python -m backend serve` and connects.
    prefs.python, prefs.roots = python, roots
    prefs.extra_args = f"--state {launcher_state} --no-resume"
    prefs.address, prefs.timeout_s = f"tcp://127.0.0.1:{free_port()}", 10.0
    bpy.ops.avatex.backend_start()
    pid = runtime.local.proc.pid
    ext.tick_until(lambda: runtime.connection_state == "connected", 120, sleep=0.02)
    launched = runtime.status_line()
    bpy.ops.avatex.backend_stop()
    runtime.local.proc.wait(30)
    with open(runtime.local.log_path) as f:
        log = f.read()
    return {"with_file": with_file, "with_text": with_text, "without": without, "launched": launched,
            "pid": pid, "exit": runtime.local.proc.returncode, "log": log}
