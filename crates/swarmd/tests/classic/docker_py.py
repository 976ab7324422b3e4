"""docker-py (Debian's python3-docker) against `swarmd manage`, one call per invocation.

The Rust test (e2e_classic_compose.rs) runs it with DOCKER_HOST pointing at the manager and
does all waiting and checking itself; each command prints one JSON document.

    docker_py.py run NAME CONSTRAINT   containers.run(detach=True) with -e constraint:...
    docker_py.py list                  containers.list(): [{"name", "id", "node"}]
    docker_py.py logs NAME             container.logs()
    docker_py.py remove NAME           container.remove(force=True)
"""

import json
import sys

import docker


def main(argv):
    client = docker.from_env()
    cmd, args = argv[1], argv[2:]
    if cmd == "run":
        name, constraint = args
        ctr = client.containers.run(
            "busybox",
            ["sh", "-c", "echo from-docker-py; exec sleep 1d"],
            name=name,
            detach=True,
            environment=["constraint:" + constraint],
        )
        out = {"id": ctr.id, "name": ctr.name}
    elif cmd == "list":
        out = [
            {"name": c.name, "id": c.id, "node": (c.attrs.get("Node") or {}).get("Name")}
            for c in client.containers.list()
        ]
    elif cmd == "logs":
        out = client.containers.get(args[0]).logs().decode()
    elif cmd == "remove":
        client.containers.get(args[0]).remove(force=True)
        out = "removed"
    else:
        raise SystemExit("unknown command " + cmd)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
