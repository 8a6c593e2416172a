"""Everything the launcher keeps on disk, in one package.

- `layout`: where each kind of entry lives (one root, paths asked for by name);
- `manage`: what `launcher cache` does (list, info, prune, clear).
"""

from launcher.cache.layout import TREE_FORMAT, CacheLayout, default_cache_dir, writable_by_others

__all__ = ["TREE_FORMAT", "CacheLayout", "default_cache_dir", "writable_by_others"]
