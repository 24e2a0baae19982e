"""The daemon's base layer: errors, tasks, and work held until an answer is written.
Imports no other daemon layer.
"""
