"""The toolbox's engines, one per SiLK tool family (as SiLK's src/rwfilter, src/rwcut, ...):
filter (rwfilter), cut (rwcut), match (rwmatch), stats (rwuniq, rwstats, rwcount) and netstruct
(rwsetcat/rwbagcat --network-structure).  The command lines that drive them are in :mod:`vlf_dagster.verbs`.
"""
