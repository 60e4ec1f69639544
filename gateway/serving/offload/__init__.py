"""Planning off the event loop: a bounded pool of workers that tenants share fairly.

The event loop only routes bytes. Checking a JSON schema, rendering a chat template and
tokenising a long prompt are CPU work (a 200 KB schema took 0.7 s in jsonschema here), so
a request that carries any of them is planned in the pool (``pool.py``): at most
``planning.workers`` jobs at once, ``per_tenant`` of them per tenant (``slots.py``), each
within ``timeout_s``. Worker processes (``processes.py``, ``worker.py``) hold their own
copy of every renderer and run at a lower CPU priority, so neither the GIL nor the CPU
they use slows the loop; threads (``threads.py``) are the lighter, GIL-bound option.
"""
