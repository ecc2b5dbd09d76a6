"""Spark on a bench cluster, workspace side and member side: the written spark-defaults.conf files,
the three PySpark Jupyter kernels, and the executor-slot program SGE runs on members.

Imports nothing of `manager` or `agent`: the manager uses the pure parts (sizing, conf files), the
kernels and slot jobs run where only this package and pyspark are needed.
"""
