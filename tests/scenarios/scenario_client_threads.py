"""A default avatex_core.client in a fresh interpreter: one large echo, then the threads left running.

``python scenario_client_threads.py ENDPOINT`` prints the sorted names of the live threads; Blender
forbids Python threads, so the client must leave only ``MainThread`` (not even pyzmq's gc thread).
"""

import sys
import threading

import numpy as np

from avatex_core.client import Client


def main(endpoint: str) -> list[str]:
    client = Client(endpoint)
    big = np.arange(3_000_000, dtype=np.float32)
    rid = client.submit("echo", {}, {"a": big})
    done = None
    while done is None:
        for event in client.poll(0.01):
            if event.id == rid and event.final:
                done = event
    assert np.array_equal(done.arrays["a"], big)
    client.close()
    return sorted(t.name for t in threading.enumerate())


if __name__ == "__main__":
    print(main(sys.argv[1]))
