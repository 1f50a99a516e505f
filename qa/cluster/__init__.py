"""A corpus built and served as shards on Ray, answering exactly as one process does.

``shards``: the build's pieces (split, embed, corpus-wide statistics, writing a shard), Ray-free;
``build``: those pieces run as Ray tasks and an actor pool (``qa index --ray``);
``search``: what one shard answers (candidate passages, sentence rows);
``front``: the engine that fans a question out to the shards and ranks their rows with qa/rank.py;
``updates``: document changes routed to the shard that owns the file (``qa.updates.IndexUpdates``);
``serve``: the shards and the front as Ray Serve deployments behind the HTTP API (``qa serve --ray``).
Only ``build`` and ``serve`` import Ray.
"""
