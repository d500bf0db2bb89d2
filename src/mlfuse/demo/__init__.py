"""``mlfuse demo``: a local web page to fuse an image pair with several methods, compare the results
side by side and read their metrics. Standard-library HTTP server, one static page shipped in the
package (``static/``), no external resources, nothing written outside a scratch folder."""

from mlfuse.demo.server import DemoServer

__all__ = ["DemoServer"]
