"""All SQL and Redis access of the vote service, one module per concern:

- votes.py: the votes table (insert with the outbox event, delete, lists,
  counts from the table) and the append-only daily usage;
- admission.py: quota admission and the abuse-rule windows (Redis, with the
  table as fallback);
- counts.py: the cached per-item counts and their reconciliation;
- outbox.py: the outbox relay to the Redis stream, and its retention.

They count and store; the decisions are in services/vote/rules.py.
"""
