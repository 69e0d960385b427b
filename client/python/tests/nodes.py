"""Real Cairn nodes for the tests: `Node` starts `cairn serve` on an ephemeral loopback port with its own data
dir and waits for it to serve; `cli()` runs the `cairn` CLI against it.

The binary is `$CAIRN_BIN`, else `$CARGO_TARGET_DIR/debug/cairn`, else `~/.cache/cairn/target/debug/cairn`.
The node finds its model in `~/.cache/cairn` by itself (or `CAIRN_MODEL_DIR` / `ORT_DYLIB_PATH`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

START_TIMEOUT = 120.0


def cairn_bin() -> Path:
    if os.environ.get("CAIRN_BIN"):
        return Path(os.environ["CAIRN_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
        os.environ.get("CAIRN_CACHE") or os.path.expanduser("~/.cache/cairn"), "target")
    return Path(target) / "debug" / "cairn"


class NodeError(RuntimeError):
    pass


class Node:
    """A running `cairn serve` process.

    Attributes: `url` (http:// or https://), `token` (the admin token from `<data_dir>/admin.token`),
    `data_dir`, `tls_fingerprint` (with `--tls`), `node_id` (hex, fetched on first use), `args` (the extra
    serve arguments), `log_path` (its stderr).
    """

    def __init__(self, data_dir: Path, args: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None,
                 state_dir: Path | None = None, listen: str = "127.0.0.1:0"):
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.listen = listen
        self._extra_env = dict(env or {})
        # Client-side state kept out of the user's home: the CLI's pins (roots.json) and the node's record of
        # published roots.
        self.state_dir = Path(state_dir) if state_dir else self.data_dir.parent / (self.data_dir.name + "-state")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / "node.log"
        self.proc: subprocess.Popen | None = None
        self.url: str = ""
        self.addr: str = ""
        self.token: str | None = None
        self.tls_fingerprint: str | None = None
        self._node_id: str | None = None
        self._stdout_lines: list[str] = []

    # ------------------------------------------------------------------ life

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("CAIRN_LOG", "warn")
        env["CAIRN_PUBLISHED_DIR"] = str(self.state_dir / "published")
        env["CAIRN_STATE"] = str(self.state_dir / "cli-roots.json")
        env.pop("CAIRN_TOKEN", None)
        env.pop("CAIRN_NODE", None)
        env.pop("CAIRN_TLS_PIN", None)
        env.update(self._extra_env)
        return env

    def start(self) -> Node:
        if self.proc is not None:
            raise NodeError("already running")
        binary = cairn_bin()
        if not binary.exists():
            raise NodeError(f"no cairn binary at {binary} (set CAIRN_BIN, or build it: cargo build --bin cairn)")
        cmd = [str(binary), "serve", "--data-dir", str(self.data_dir), "--listen", self.listen, *self.args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                     env=self.env(), text=True, bufsize=1)
        log.close()
        found: dict[str, str] = {}
        ready = threading.Event()

        def read():
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                self._stdout_lines.append(line)
                if line.startswith("cairn node TLS certificate sha256 "):
                    found["fp"] = line.split()[-1]
                if line.startswith("cairn node listening on "):
                    found["addr"] = line[len("cairn node listening on "):].split()[0]
                    ready.set()
            ready.set()  # stdout closed: the process ended

        threading.Thread(target=read, daemon=True).start()
        ready.wait(START_TIMEOUT)
        if "addr" not in found:
            self.kill()
            raise NodeError(f"node did not start (see {self.log_path}):\n{self.log_tail()}")
        self.addr = found["addr"]
        self.tls_fingerprint = found.get("fp")
        self.url = ("https://" if self.tls_fingerprint else "http://") + self.addr
        tok = self.data_dir / "admin.token"
        self.token = tok.read_text().strip() if tok.exists() and "--no-auth" not in self.args else None
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p.stdout:
            p.stdout.close()

    def kill(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()

    def restart(self) -> Node:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --------------------------------------------------------------- clients

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            with self.client() as c:
                self._node_id = c.node_info().node_id
        return self._node_id

    def client(self, token: str | None | type(...) = ..., **kw):
        """A CairnClient with the admin token (or `token`; None: no token) and the TLS certificate pinned."""
        from cairn import CairnClient

        if self.tls_fingerprint and "tls_pin" not in kw and not kw.get("trust_on_first_use"):
            kw["tls_pin"] = self.tls_fingerprint
        return CairnClient(self.url, token=self.token if token is ... else token, **kw)

    def aclient(self, token: str | None | type(...) = ..., **kw):
        """An AsyncCairnClient like `client()` (construct it inside a running event loop)."""
        from cairn import AsyncCairnClient

        if self.tls_fingerprint and "tls_pin" not in kw and not kw.get("trust_on_first_use"):
            kw["tls_pin"] = self.tls_fingerprint
        return AsyncCairnClient(self.url, token=self.token if token is ... else token, **kw)

    def command(self, *args: str, token: str | None | type(...) = ...,
                env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """(argv, env) to run `cairn --node URL <args>` yourself, e.g. a long-running `cairn mcp` under
        subprocess.Popen or an MCP stdio client: the admin token (or `token`) in CAIRN_TOKEN, the TLS pin in
        CAIRN_TLS_PIN, and this node's own CLI trust state."""
        full_env = self.env()
        t = self.token if token is ... else token
        if t:
            full_env["CAIRN_TOKEN"] = t
        if self.tls_fingerprint:
            full_env["CAIRN_TLS_PIN"] = self.tls_fingerprint
        full_env.update(env or {})
        return [str(cairn_bin()), "--node", self.url, *args], full_env

    def cli(self, *args: str, token: str | None | type(...) = ..., check: bool = True, json_out: bool = False,
            input: str | None = None, timeout: float = 120.0, env: dict[str, str] | None = None):
        """Runs `cairn --node URL <args>` with the admin token (or `token`). Returns the CompletedProcess, or
        with `json_out=True` the parsed `--json` output. `check=True` raises on a non-zero exit. The CLI's
        trust state is this node's own file (`CAIRN_STATE`) unless `env` says otherwise."""
        cmd, env = self.command(*((["--json"] if json_out else []) + list(args)), token=token, env=env)
        out = subprocess.run(cmd, env=env, input=input, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise NodeError(f"cairn {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
        if json_out:
            return json.loads(out.stdout)
        return out

    def copy_data_dir(self, dest: Path) -> Path:
        """Copies the data dir (stop the node first for a consistent copy). The copy forgets this node's p2p
        port so both can run at once."""
        shutil.copytree(self.data_dir, dest)
        (Path(dest) / "p2p.addr").unlink(missing_ok=True)
        return Path(dest)


def wait_for(cond, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
