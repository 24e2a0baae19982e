"""The daemon's relay layer: the relay pool, publishing, health and watch, inbound and
outbound gift wraps, sizing, presence and the directory. Imports only the base layer.
"""
