"""`gemini-magics serve`: run the local Interactions API server in the foreground.
`gemini-magics quickstart`: run the quickstart notebook headless (see quickstart.py).
`gemini-magics keys NAME...`: print a keys file for `serve --keys` (classroom mode), one fresh
random key per name.

Prints the base URL once the socket accepts connections, stops cleanly on Ctrl-C or SIGTERM.
Wrong options end with one sentence on stderr (exit 2), never a traceback. The API key is
never printed; it can come from the environment instead of the command line (which `ps` shows).
On loopback no key is needed (the SDK examples run with any GEMINI_API_KEY); a server other
machines can reach needs one, and runs no code unless started with --allow-code-execution.
Classroom mode (`--keys FILE`, server/classroom.py): a key per student, each seeing only its own
interactions, with `--key-rate` and `--key-tokens` quotas.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Callable, Optional

from .server_process import remove_discovery, write_discovery

API_KEY_ENV = "GEMINI_MAGICS_SERVER_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemini-magics",
        description="Gemini Interactions API magics for Jupyter, with an offline local server.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    serve = sub.add_parser(
        "serve", help="run the local Interactions API server",
        description="Serve the Gemini Interactions API locally (point an SDK at it with "
                    "GOOGLE_GEMINI_BASE_URL and any GEMINI_API_KEY).")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; any other needs --api-key)")
    serve.add_argument("--port", type=int, default=8390, help="port (default 8390; 0 = any free)")
    serve.add_argument("--engine", choices=["local", "echo", "openai"], default="local",
                       help="local: a small real LLM (default); echo: instant, deterministic; "
                            "openai: forward to an OpenAI-compatible server (--engine-url)")
    serve.add_argument("--engine-url", metavar="URL",
                       help="the OpenAI-compatible server for --engine openai, e.g. "
                            "http://127.0.0.1:8080 (llama.cpp's llama-server, vLLM, Ollama)")
    serve.add_argument("--engine-model", metavar="NAME",
                       help="model name sent to that server (default: the first it lists)")
    serve.add_argument("--engine-key-env", metavar="VAR",
                       help="environment variable holding that server's API key")
    serve.add_argument("--db", metavar="PATH",
                       help="SQLite file for stored interactions (default: in memory)")
    serve.add_argument("--api-key", metavar="KEY",
                       help=f"require this x-goog-api-key on every request (or set {API_KEY_ENV})")
    serve.add_argument("--model-path", metavar="GGUF",
                       help="GGUF model file for the local engine (default: SmolLM2-135M)")
    serve.add_argument("--parallel", type=int, default=1, metavar="N",
                       help="llama.cpp slots for the local engine (default 1): more throughput "
                            "for many users, but the same seed no longer gives the same text")
    serve.add_argument("--idle-exit", type=float, default=0, metavar="SECONDS",
                       help="exit after this long with no request and no turn running "
                            "(0, the default: never); the shared per-user server uses 1800")
    serve.add_argument("--discovery-file", metavar="PATH",
                       help="once listening, write {url, pid, engine, key} here (mode 0600) "
                            "for other kernels to find this server; removed at exit")
    serve.add_argument("--allow-code-execution", action="store_true",
                       help="run the code_execution tool and agents (in the bubblewrap sandbox) "
                            "on a --host other machines can reach; loopback always does")
    serve.add_argument("--keys", metavar="FILE",
                       help="classroom mode: accept only the keys in FILE (one a line, "
                            "optionally 'label: key'); each key sees only its own interactions")
    serve.add_argument("--key-rate", type=int, metavar="N",
                       help="with --keys: at most N requests that start a turn per minute per key")
    serve.add_argument("--key-tokens", type=int, metavar="N",
                       help="with --keys: at most N tokens in total per key (finished turns' "
                            "usage; kept in --db across restarts)")
    serve.add_argument("--storage-mb", type=float, metavar="MIB",
                       help="bound the stored interactions (default 256)")
    serve.add_argument("--max-items", type=int, metavar="N",
                       help="at most N stored interactions (default 10,000)")
    serve.add_argument("--key-storage-mb", type=float, metavar="MIB",
                       help="with --keys: each key's share of the store (default: --storage-mb / "
                            "the number of keys)")
    serve.add_argument("--key-items", type=int, metavar="N",
                       help="with --keys: each key's share of --max-items")
    # -- the teacher's console and TLS (issue #23; server/teacher.py) --
    serve.add_argument("--teacher-key-env", metavar="VAR",
                       help="with --keys: open the teacher's console at /teacher, behind the key "
                            "in this environment variable (never on the command line)")
    serve.add_argument("--certfile", metavar="PEM",
                       help="serve HTTPS with this certificate (with --keyfile)")
    serve.add_argument("--keyfile", metavar="PEM", help="the private key of --certfile")
    keys = sub.add_parser(
        "keys", help="print a keys file for serve --keys, a random key per name",
        description="Print 'name: key' lines with fresh random keys, for `gemini-magics serve "
                    "--keys FILE` (classroom mode). Save them to a file and hand each student "
                    "their key.")
    keys.add_argument("names", nargs="+", metavar="NAME", help="a label per key, e.g. alice")
    sub.add_parser(
        "quickstart", help="run the quickstart notebook (offline by default) or open it in JupyterLab",
        description="Run notebooks/quickstart.ipynb headless with the local offline model and "
                    "report each section, or open it in JupyterLab with --lab.",
        add_arguments=_quickstart_arguments)
    return parser


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser that may add its options only when that command is parsed, so
    `gemini-magics --help` (or `serve`) never imports another command's modules."""

    def __init__(self, *args, add_arguments: Optional[Callable] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_arguments = add_arguments

    def parse_known_args(self, args=None, namespace=None):
        add, self._add_arguments = self._add_arguments, None
        if add is not None:
            add(self)
        return super().parse_known_args(args, namespace)


def _quickstart_arguments(parser: argparse.ArgumentParser) -> None:
    from .quickstart import add_arguments  # deferred: nbformat, nbclient, jupyter_client

    add_arguments(parser)


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "quickstart":
        from .quickstart import main as quickstart  # deferred: nbclient, jupyter_client

        return quickstart(args)
    if args.command == "keys":
        from .server.classroom import new_keys_text  # deferred: with the server

        try:
            sys.stdout.write(new_keys_text(args.names))
        except ValueError as e:
            return _fail(str(e))
        return 0
    if args.command != "serve":
        parser.print_help()
        return 2
    return serve(args)


class _Refused(Exception):
    """A `serve` option that cannot work: the message is the one sentence the user reads."""


def serve(args: argparse.Namespace) -> int:
    from .server import sandbox_refusal, start_server  # deferred: starlette, uvicorn

    logging.basicConfig(level=logging.WARNING, format="gemini-magics: %(name)s: %(message)s")
    try:
        _check_serve_options(args)
        api_key, keys, teacher_key = _serve_keys(args)
        engine = _serve_engine(args)
    except _Refused as e:
        return _fail(str(e))
    os.umask(0o077)  # what the server writes (store, logs, sandbox files) is this user's only
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        srv = start_server(engine=engine, db=args.db, host=args.host, port=args.port,
                           api_key=api_key, model_path=args.model_path,
                           allow_code_execution=args.allow_code_execution, keys=keys,
                           storage_mb=args.storage_mb, max_items=args.max_items,
                           key_storage_mb=args.key_storage_mb, key_items=args.key_items,
                           teacher_key=teacher_key, certfile=args.certfile,
                           keyfile=args.keyfile)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        return _fail(str(e))
    if args.discovery_file:
        try:
            write_discovery(args.discovery_file, url=srv.base_url, engine=args.engine,
                            api_key=api_key)
        except OSError as e:
            srv.stop()
            return _fail(f"cannot write the discovery file {args.discovery_file} ({e.strerror}).")
    _announce(args, srv, engine, api_key, keys, teacher_key)
    try:  # the sandbox probe (up to ~1 s) may meet Ctrl-C: the same clean stop as below
        print(f"gemini-magics: {_code_execution_status(srv.code_execution, sandbox_refusal())}",
              file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not srv.running:
                return _fail("the server stopped unexpectedly; see the log above.")
            if args.idle_exit > 0 and srv.idle_seconds() >= args.idle_exit:
                print(f"gemini-magics: idle for {args.idle_exit:g} s, stopping.",
                      file=sys.stderr, flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        if args.discovery_file:
            remove_discovery(args.discovery_file)
        srv.stop()
        if engine is not args.engine:
            engine.close()
    if keys is not None:
        used = ", ".join(f"{st.label} {st.used:,}" + ("" if st.cost is None else f" (${st.cost:.4f})")
                         for st in keys.students())
        print(f"gemini-magics: tokens used per key: {used}.", file=sys.stderr, flush=True)
    print("gemini-magics: stopped.", file=sys.stderr, flush=True)
    return 0


def _check_serve_options(args: argparse.Namespace) -> None:
    """Options that contradict each other or cannot be met, each as one sentence."""
    if args.idle_exit < 0:
        raise _Refused(f"--idle-exit must be 0 (never) or a number of seconds, not "
                       f"{args.idle_exit:g}.")
    if not 0 <= args.port <= 65535:
        raise _Refused(f"--port must be between 0 and 65535, not {args.port}.")
    if args.model_path and not os.path.isfile(args.model_path):
        raise _Refused(f"--model-path {args.model_path!r} is not a file; give the path of a .gguf "
                       f"model file.")
    if args.keys is None and (args.key_rate is not None or args.key_tokens is not None):
        raise _Refused("--key-rate and --key-tokens go with --keys FILE (classroom mode).")
    if args.keys is not None and args.api_key:
        raise _Refused("Give either --keys (a key per student) or --api-key (one key for "
                       "everyone), not both.")
    if args.teacher_key_env and args.keys is None:
        raise _Refused("--teacher-key-env goes with --keys FILE (classroom mode).")
    if args.engine != "openai" and (args.engine_url or args.engine_model or args.engine_key_env):
        raise _Refused("--engine-url, --engine-model and --engine-key-env go with --engine openai.")
    if args.parallel != 1 and args.engine != "local":
        raise _Refused("--parallel is for the local engine (an openai engine batches itself).")


def _serve_keys(args: argparse.Namespace) -> tuple:
    """(the one API key or None, the classroom KeyRing or None, the teacher's key or None)."""
    # with --keys, a key in the environment is not the server's (it may be the shared one's)
    api_key = None if args.keys else (args.api_key or os.environ.get(API_KEY_ENV) or None)
    keys = None
    if args.keys is not None:
        from .server.classroom import KeyRing  # deferred: with the server

        try:
            keys = KeyRing.from_file(args.keys, rate=args.key_rate, tokens=args.key_tokens)
        except ValueError as e:
            raise _Refused(str(e)) from None
    teacher_key = None
    if args.teacher_key_env:
        teacher_key = os.environ.get(args.teacher_key_env, "").strip()
        if not teacher_key:
            raise _Refused(f"--teacher-key-env names {args.teacher_key_env}, which is not set; "
                           f"put the teacher's key in that environment variable.")
    return api_key, keys, teacher_key


def _serve_engine(args: argparse.Namespace):
    """The engine name, or an engine made here when its options need it (--parallel, openai)."""
    from .server.engines import make_engine  # deferred: with the server

    try:
        if args.parallel != 1:
            return make_engine("local", model_path=args.model_path, parallel=args.parallel)
        if args.engine == "openai":
            return make_engine("openai", engine_url=args.engine_url,
                               engine_model=args.engine_model, engine_key_env=args.engine_key_env)
    except (ValueError, OSError) as e:
        raise _Refused(str(e)) from None
    return args.engine


def _announce(args, srv, engine, api_key, keys, teacher_key) -> None:
    """The URL on stdout (what scripts read), then what is served, on stderr."""
    print(srv.base_url, flush=True)
    note = "; requests must send the x-goog-api-key header" if api_key else ""
    if keys is not None:
        limits = [f"{keys.rate} requests per minute" if keys.rate else "",
                  f"{keys.tokens:,} tokens" if keys.tokens else ""]
        limits = " and ".join(x for x in limits if x)
        note = (f"; classroom mode: {len(keys)} keys from {args.keys}, each seeing only its own "
                f"interactions" + (f", at most {limits} per key" if limits else ""))
    where = f" at {engine.url}" if isinstance(getattr(engine, "url", None), str) else ""
    print(f"gemini-magics: serving the Interactions API with the {args.engine} engine{where}{note}. "
          f"Use it with GOOGLE_GEMINI_BASE_URL={srv.base_url}. Ctrl-C to stop.",
          file=sys.stderr, flush=True)
    if teacher_key:
        print(f"gemini-magics: the teacher's console is at {srv.base_url}/teacher.",
              file=sys.stderr, flush=True)


def _code_execution_status(allowed: bool, refusal: Optional[str]) -> str:
    """One line on whether the code_execution tool (and agents) will run code here."""
    if not allowed:
        return ("code execution is off: this host is reachable from other machines "
                "(--allow-code-execution turns it on).")
    if refusal:
        return refusal[0].lower() + refusal[1:]
    return "code execution runs in a bubblewrap sandbox (no network, no host files)."


def _fail(message: str) -> int:
    print(f"gemini-magics: error: {message}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
