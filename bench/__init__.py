"""Throughput/latency benchmark: crm-postback vs a naive one-postback-per-trigger baseline.

`python -m bench.run compare|steady|long|nodes --help`. Modules, one job each:

- `workload`: the deterministic trigger stream (lifecycle mix, 3 event sets) and expected ids
- `services`: throw-away PostgreSQL databases, the run's Redis keys, server versions
- `machine`: what the run ran on
- `simulator` / `sim_proc`: the TikTok simulator, recording only event_id -> received_at
- `dbcount`: counting DB statements (SQLAlchemy cursor executes) in a process
- `worker_entry`: the bench-only Celery worker launcher that counts statements per process
- `workers`: starting/stopping worker processes (nodes); `rss`: sampling their memory from /proc
- `cpu`: CPU seconds per component (PostgreSQL backends, workers, producers, simulator) from /proc
- `producers`: one-at-a-time, batched, naive and paced enqueueing, recording accept times
- `naive`: the baseline, written the way the lead platform's postback page shows
- `runs`: one measured run; `modes`: compare / steady / long / nodes; `metrics`, `report`, `profile`
"""
