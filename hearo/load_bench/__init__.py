"""`hearo bench load` and `hearo bench soak`: how many live homes one box protects, and for how long.

N paced WebSocket clients on loopback, each a home whose room sound carries one emergency at
a known onset, run in a pool of client processes against a running gateway; the bench
accounts for what came back (onset-to-detection latency, missed and spurious detections),
what the servers reported (late and dropped windows, batch sizes, queue wait) and what they
cost (CPU and RSS per stream). ``--ramp`` searches for the largest N that holds. The soak runs
N homes round after round and watches what the servers hold (memory, descriptors, sockets,
event-loop tasks, database connections).

Modules: :mod:`.audio` (each home's recording), :mod:`.accounting` (detections against the
planned events), :mod:`.clients` (the client processes), :mod:`.devices` (the bench's devices
over REST), :mod:`.server_usage` (Prometheus scrapes and /proc), :mod:`.measure` (one run at
N and the ramp), :mod:`.ramp` (the search), :mod:`.system` (``--start-system``),
:mod:`.soak` (rounds and footprints), :mod:`.report` (tables and JSON). docs/performance.md describes the command and its figures.
"""
