"""Fault-injection ("chaos") suite: N triggers through worker + beat + Redis or RabbitMQ +
PgBouncer + PostgreSQL.

Run it with `python -m chaos.run --mode bounded|full`; see `chaos/run.py`.

Modules, one job each:
    config     modes, timings and the environment the workers get
    services   the private redis-server (or the run's RabbitMQ queue), the private PostgreSQL
               cluster, the private PgBouncer and the throw-away PostgreSQL database
    processes  celery worker / beat subprocesses, their children, their logs
    load       the event sets, the trigger plan (with the expected events) and the pusher
    faults     the fault schedule (SIGKILLs, Redis/PgBouncer/PostgreSQL restarts, connection kills)
    pii        the scanner looking for raw emails and phone numbers
    checks     what is verified once the outbox has drained
    report     the table, the JSON figures and the machine description
    harness    runs all of the above in order and always cleans up
"""
