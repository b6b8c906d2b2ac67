#!/usr/bin/env python3
"""Drive an interactive command on a pseudo-terminal for the TTY tests.

usage: pty_drive.py STEPS_JSON -- CMD...
STEPS_JSON is a list of {"send": text} or {"expect": text} (each expect waits up to 10 s).
Prints what the terminal showed and exits with the command's exit code (124 on timeout).
"""
import json, os, pty, select, sys, time

def main():
    sep = sys.argv.index("--")
    steps = json.loads(sys.argv[1])
    cmd = sys.argv[sep + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    seen = b""
    def read_some(timeout):
        nonlocal seen
        r, _, _ = select.select([fd], [], [], timeout)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            seen += data
            # Answer cursor-position queries as a real terminal would (busybox sh asks).
            for _ in range(data.count(b"\x1b[6n")):
                os.write(fd, b"\x1b[1;1R")
        return True
    for step in steps:
        if "send" in step:
            os.write(fd, step["send"].encode())
        else:
            want = step["expect"].encode()
            deadline = time.time() + 10
            while want not in seen:
                if time.time() > deadline:
                    sys.stdout.write(seen.decode(errors="replace"))
                    print(f"\n[pty_drive: timed out waiting for {want!r}]")
                    os.kill(pid, 9)
                    sys.exit(124)
                if not read_some(0.2):
                    break
    deadline = time.time() + 10
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            while read_some(0.05):
                pass
            sys.stdout.write(seen.decode(errors="replace"))
            sys.exit(os.waitstatus_to_exitcode(status))
        read_some(0.1)
    sys.stdout.write(seen.decode(errors="replace"))
    print("\n[pty_drive: command did not exit]")
    os.kill(pid, 9)
    sys.exit(124)

main()
