"""Token metering: prices, the write-ahead ledger, spend queries and metering metrics."""
