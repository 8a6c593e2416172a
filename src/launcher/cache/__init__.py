"""Everything the launcher keeps on disk, in one package.

- `layout`: where each kind of entry lives (one root, paths asked for by name);
- `safety`: when the cache may be trusted (ownership, modes, kinds) and the one
  walker every traversal and deletion uses (never through a link);
- `manage`: what `launcher cache` does (list, info, prune, clear);
- `verify`: `launcher cache verify` (hash every file, repair).

`layout` and `safety` are used by every step of the pipeline; `manage` and
`verify` sit on top of it (they read manifests and rebuild trees).
"""

from launcher.cache.layout import TREE_FORMAT, CacheLayout, default_cache_dir, writable_by_others

__all__ = ["TREE_FORMAT", "CacheLayout", "default_cache_dir", "writable_by_others"]
