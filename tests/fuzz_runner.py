"""Run many `vcc` command lines in one process (the fuzz test's worker).

    python tests/fuzz_runner.py CASES.json RESULTS.jsonl

Each case is {"id", "argv"}: `vcc.driver.cli.run_cli(argv)` (what `vcc ARGV` runs, less its
final `os._exit`) with file descriptors 1 and 2 sent to a file of its own, so C-level output
(TVM, onnxsim) is caught too. Before a case starts its id is appended to RESULTS with
"started"; when it ends, its exit code and output. A case that kills the process (a signal)
is the last "started" line without an end: the test reports it and starts a new worker on
the cases after it. Startup (torch, tvm, onnxsim imports) is paid once per worker instead of
once per case.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import tempfile


def main() -> None:
    cases = json.loads(open(sys.argv[1]).read())
    results = open(sys.argv[2], "a", buffering=1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    from vcc.driver.cli import run_cli

    saved = os.dup(1), os.dup(2)
    sink = os.open(os.devnull, os.O_WRONLY)
    for case in cases:
        results.write(json.dumps({"id": case["id"], "started": True}) + "\n")
        with tempfile.TemporaryFile() as out:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                code = run_cli(list(case["argv"]))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                # what the interpreter's teardown would print: the CLI skips it (os._exit)
                os.dup2(sink, 1)
                os.dup2(sink, 2)
                gc.collect()
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
            out.seek(0)
            text = out.read().decode(errors="replace")
        results.write(json.dumps({"id": case["id"], "code": code, "output": text[-4000:]}) + "\n")
    results.close()


if __name__ == "__main__":
    main()
