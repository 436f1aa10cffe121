"""kfp v2 components: one file each, a thin shim into `cocos` (kfp serialises the body, so logic lives there)."""
