"""Fleet rollback: many tenants (one database and failback.toml each) rolled back in waves on Dask, with a failure
budget, a fleet journal for exactly-once resume, and a fleet audit log.

``manifest`` (which tenants, checked by ``plan_fleet``) · ``waves`` (wave sizes and the failure budget, pure) ·
``journal`` (tenant → state, the fleet audit log) · ``runner`` (the Dask tasks and the coordinator) ·
``report`` (JSON, Markdown, HTML).
"""
