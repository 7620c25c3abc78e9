"""The durable event bus: versioned event schemas, one bus interface, two engines.

`schemas` (the contract), `codec` (bytes <-> events, rejecting what does not fit),
`bus` (the interface and keyed partitions), `embedded` (sqlite WAL, no server),
`jetstream` (NATS JetStream), `checkpoint` (consumer positions committed with derived state).
Imports `settings` and `privacy` at most; the application (`crm`) and `pipelines` use it.
"""
