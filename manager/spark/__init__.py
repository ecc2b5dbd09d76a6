"""Spark on the cluster, manager side: the supervised standalone master, the client of its JSON
API, and the broker that turns what applications want into SGE executor-slot jobs."""
