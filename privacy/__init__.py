"""Privacy and access control for the gateway: authentication, ABAC, masking, encryption at
rest, audit, TLS and limits (docs/privacy.md). Import the submodules you need; this package
imports nothing heavy on its own."""
