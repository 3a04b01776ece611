"""`hearo bench load`: how many live homes one box protects.

N paced WebSocket clients on loopback, each a home whose room sound carries one emergency at
a known onset, run in a pool of client processes against a running gateway; the bench
accounts for what came back (onset-to-detection latency, missed and spurious detections),
what the servers reported (late and dropped windows, batch sizes, queue wait) and what they
cost (CPU and RSS per stream). ``--ramp`` searches for the largest N that holds.

Modules: :mod:`.audio` (each home's recording), :mod:`.accounting` (detections against the
planned events), :mod:`.clients` (the client processes), :mod:`.devices` (the bench's devices
over REST), :mod:`.server_usage` (Prometheus scrapes and /proc), :mod:`.measure` (one run at
N and the ramp), :mod:`.ramp` (the search), :mod:`.system` (``--start-system``),
:mod:`.report` (table and JSON). docs/performance.md describes the command and its figures.
"""
