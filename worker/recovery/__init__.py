"""Recovery of integration tasks from failures: classify, decide, record, retry.

- ``task.IntegrationTask``: the base class every task talking to 1C uses;
- ``dispatcher``: classifies an exception and applies its strategy;
- ``classifier``, ``table``, ``strategies``: error kinds, the kind-to-strategy
  table with its overrides, and the strategies themselves;
- ``retry_policy``, ``scheduling``: countdowns, and retries kept in the database
  when the broker cannot hold them;
- ``breaker``: the circuit-breaker interface; ``escalation``: e-mail to admins;
- ``fallback``: CommerceML documents written to the exchange outbox.

docs/recovery.md describes the whole flow and its settings.
"""
