"""The ``nas`` subcommands that belong to the server: ``serve`` and ``tokens``.

``nas`` finds them through the ``nas.commands`` entry point (pyproject), so the engine's CLI
never imports this package (DESIGN §2: nothing imports ``api``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys

from nas.cli import _fail  # one error format for every nas command

__all__ = ["register"]

KEEP_ALIVE_S = 65


def cmd_serve(args: argparse.Namespace) -> int:
    """The embedded default: the API on loopback, one runner process, SQLite unless
    NAS_DATABASE_URL says otherwise, local Ray unless RAY_ADDRESS does."""
    try:
        import uvicorn
    except ImportError as e:
        return _fail(f"nas serve needs the server extra ({e.name} is missing): pip install 'nas-service[server]'")
    from nas.storage import Store

    from .app import create_app
    from .settings import Settings

    try:
        env = Settings.from_env()
        runners_env = os.environ.get("NAS_RUNNERS", "1")
        if not runners_env.isdigit():
            raise ValueError(f"NAS_RUNNERS: got {runners_env!r}; valid: an integer >= 0")
    except ValueError as e:
        return _fail(str(e))
    args.host = args.host or env.host
    args.port = env.port if args.port is None else args.port
    args.runners = int(runners_env) if args.runners is None else args.runners
    if not 0 < args.port < 65536:
        return _fail(f"--port: got {args.port}; valid: 1..65535")
    if args.runners < 0:
        return _fail(f"--runners: got {args.runners}; valid: an integer >= 0")
    store = Store(args.db)
    settings = dataclasses.replace(env, database_url=store.url, host=args.host, port=args.port)
    chosen = os.environ.get("NAS_ADMIN_TOKEN")
    if chosen:  # deployments: the operator's secret, valid across restarts of the API
        if store.verify_token(chosen) is None:
            from sqlalchemy.exc import IntegrityError

            try:
                store.create_token("admin (NAS_ADMIN_TOKEN)", ["admin"], secret=chosen)
            except ValueError as e:
                return _fail(f"NAS_ADMIN_TOKEN: {e}")
            except IntegrityError:
                return _fail("NAS_ADMIN_TOKEN: this token was revoked (`nas tokens revoke`); choose a new secret")
        shown = "the value of NAS_ADMIN_TOKEN"
    else:  # the embedded default: one live serve-admin token, the one printed below
        for old in store.list_tokens():
            if old["name"] == "serve-admin" and not old["revoked_at"]:
                store.revoke_token(old["id"])
        shown, _ = store.create_token("serve-admin", ["admin"])
    env = dict(os.environ, NAS_DATABASE_URL=store.url)  # not on the command line: `ps` shows it
    from nas.runner import die_with_parent

    runners = [subprocess.Popen([sys.executable, "-m", "nas.cli", "runner"], env=env, preexec_fn=die_with_parent)
               for _ in range(args.runners)]
    url = f"http://{args.host}:{args.port}"
    print(f"nas serve: API {url}/api/v1 (OpenAPI {url}/docs), dashboard {url}/", flush=True)
    print(f"admin token (shown once): {shown}", flush=True)
    print(f"database: {store.display_url()}; {args.runners} runner(s)", flush=True)
    try:
        # dashboards poll every few seconds: a keep-alive longer than uvicorn's 5 s default keeps
        # their connections open between polls instead of racing the server's close
        uvicorn.run(create_app(settings, store), host=args.host, port=args.port, log_level="warning",
                    timeout_keep_alive=KEEP_ALIVE_S)
    finally:
        for p in runners:
            p.terminate()
        for p in runners:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    from nas.storage import Store

    from .auth import SCOPES

    store = Store(args.db)
    if args.action == "create":
        scopes = [x.strip() for x in (args.scopes or "read").split(",") if x.strip()]
        bad = [x for x in scopes if x not in SCOPES]
        if bad or not scopes:
            return _fail(f"--scopes: got {args.scopes!r}; valid: a comma-separated subset of {', '.join(SCOPES)}")
        if not args.name:
            return _fail("--name: missing; give the token a name (who or what uses it)")
        secret, rec = store.create_token(args.name, scopes)
        print(secret)
        print(f"token {rec['id']} ({rec['name']}): scopes {', '.join(rec['scopes'])}; the secret is shown once",
              file=sys.stderr)
        return 0
    if args.action == "list":
        for t in store.list_tokens():
            state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
            print(f"{t['id']}  {t['name']:<20} {','.join(t['scopes']):<24} {state}")
        return 0
    if not args.id:
        return _fail("id: missing; `nas tokens revoke ID` (ids from `nas tokens list`)")
    try:
        rec = store.revoke_token(args.id)
    except KeyError as e:
        return _fail(str(e.args[0]))
    print(f"token {rec['id']} ({rec['name']}) revoked")
    return 0


def register(sub) -> None:
    """Add ``serve`` and ``tokens`` to the ``nas`` parser's subcommands."""
    s = sub.add_parser("serve", help="run the API, the dashboard and a runner (embedded default)")
    s.add_argument("--host", default=None, help="address to bind (default $NAS_API_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default $NAS_API_PORT or 8000)")
    s.add_argument("--runners", type=int, default=None,
                   help="runner processes started beside the API (default $NAS_RUNNERS or 1)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("tokens", help="API tokens: create, list, revoke")
    s.add_argument("action", choices=["create", "list", "revoke"])
    s.add_argument("id", nargs="?", help="token id (revoke)")
    s.add_argument("--name", help="who or what uses the token (create)")
    s.add_argument("--scopes", help="comma-separated: read, write, agent, admin (create; default read)")
    s.set_defaults(func=cmd_tokens)
