"""Serving many robots' cameras from a Ray cluster (docs/serve.md): replicas that each hold a Runtime and its
StatePool, a router that pins every stream to one replica and moves it, restored from its last snapshot, when that
replica dies, and an HTTP ingress with a small JSON API.

Ray is optional (``pip install 'cobra-edge[serve]'``): protocol.py, replica.py and client.py import it never;
router.py, cluster.py and app.py only when a cluster is started.
"""
