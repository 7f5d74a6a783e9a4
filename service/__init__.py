"""The CDS Hooks 2.0 service (`fsgs-kb serve`), above the engine, which never imports it.

Importing this package, `config`, `decisionlog` or `run` needs only the core dependencies (the CLI
imports them for `serve`, `replay --decision-log` and `feedback-report`); the web packages of the
optional extra `cds` are imported by `app` and `jwtcheck`, which only a serving worker loads.
"""
