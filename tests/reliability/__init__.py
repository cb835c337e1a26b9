"""Fault-injection (reliability) suite: real Redis, real worker processes, a ledger."""
