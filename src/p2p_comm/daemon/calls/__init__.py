"""The daemon's calls layer: the call registry and the effects of the cores, local actions,
groups, records, held messages and file transfers. Imports only lower layers.
"""
