import signal
import sys

from .app import main


def _stop(*_):
    # docker stop sends SIGTERM: end serve_forever the way Ctrl-C does, so the socket is closed cleanly.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _stop)
sys.exit(main())
