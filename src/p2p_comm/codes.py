"""Numbers the CLI, the daemon and the clients share, defined once: exit codes (README "Exit
codes": one meaning each, for agents that branch on them) and the longest `wait`.

Kept free of imports: the CLI loads it on every run.
"""

EXIT_OK = 0
EXIT_ERROR = 1  # the command was understood and failed: the message says why
EXIT_USAGE = 2  # the command line is wrong
EXIT_DAEMON = 3  # the daemon cannot be started or reached (`daemon status`: not running)
EXIT_TIMEOUT = 4  # `wait` timed out with no event
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_PIPE = 141  # the reader of our output went away (`p2p history | head -1`): quiet

MAX_WAIT = 3600.0  # seconds one `wait` may block
WAIT_MARGIN = 30.0  # a client's socket outlives the daemon-side wait by this much
REQUEST_TIMEOUT = 30.0  # seconds a client waits for an ordinary answer
