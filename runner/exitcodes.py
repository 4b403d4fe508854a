"""The exit codes of every ``dspy-run`` command, in one table (the README's "Exit codes").

They live below the CLI because the batch runner, which the CLI only wires,
decides some of them itself (a drained SIGTERM is 143 wherever it is caught).
"""

EXIT_OK = 0  # every input answered (primary or fallback); every file valid; the plan printed
EXIT_FAILED = 1  # some input ended in an error; some policy file is invalid
EXIT_USAGE = 2  # the policy or the command line cannot be used: nothing was sent
EXIT_SIGINT = 130  # interrupted by Ctrl-C (128 + SIGINT)
EXIT_SIGTERM = 143  # stopped by SIGTERM (128 + SIGTERM)
