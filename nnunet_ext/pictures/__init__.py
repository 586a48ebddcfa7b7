"""Pictures: overlays and panels of images, labels and skeletons (``show-skeleton``, the demo's figure)."""
