"""The daemon's notify layer: the agent's inbox, wake hooks, the owner's channels and loop
watch. Imports only the relay and base layers.
"""
