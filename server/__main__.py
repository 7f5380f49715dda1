"""`python -m server serve|stream ...`: the server's commands without the `asr` front end."""
import sys

from server.cli import main

sys.exit(main())
