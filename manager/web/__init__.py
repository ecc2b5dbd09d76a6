"""Web access to the cluster manager (issue 19): an aiohttp app on the manager's own event loop."""
