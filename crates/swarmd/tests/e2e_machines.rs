//! End to end across two machines: overlay traffic that really crosses between hosts.
//!
//! Machine A is the host: a manager with the docker executor on the host's engine. Machine B
//! is a network namespace with a Docker Engine of its own (`swarmd_testkit::Machine`), where
//! a worker runs with the docker executor on that engine; the two are linked by a veth pair
//! on a private /30 (10.77.x.x), the nodes' `--node-addr`s. A global service on one overlay
//! network has a task on each machine, so the only path between them is the VXLAN between
//! the two machines' bridges. From each side, a task:
//!
//! - resolves the service's name to its VIP and `tasks.<name>` to both task addresses;
//! - gets answers from both tasks through the VIP (its own machine's and the other's);
//! - reaches the other machine's task at its task address, with a large body too (frames
//!   at the full MTU through the VXLAN);
//! - finds only its own machine's gateway: an ARP broadcast for the gateway address (the
//!   same `.1` on both bridges) is answered by the local bridge alone, and the container's
//!   neighbour entry for it stays the local bridge's MAC.
//!
//! Then B's node leaves the swarm: B's VXLAN device and gateway guard go with it, A unlinks
//! itself once no task of the network runs elsewhere, and A's task finds only itself.
//! Everything runs in about 10 s; machine B (namespace, engine, veth, cgroups) is removed on
//! drop, also when the test fails.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::{
    EngineCleanup, POLL, T, http_body, http_get_cmd, join_on_machine, nslookup_answers,
    running_tasks, service_field, task_containers_args, task_field, wait_ready_nodes,
};
use swarmd_testkit::{
    Daemon, Executor, Machine, engine_docker, require_engine, unique_name, wait_for, wait_until,
};

/// Serves `/` (the task's hostname: its node's, by template) and `/big` (256 KiB); exits
/// at once on SIGTERM (httpd as PID 1 would ignore it and wait out every stop's grace).
const HTTPD: &str = "mkdir -p /www && hostname > /www/index.html \
    && dd if=/dev/zero of=/www/big bs=1024 count=256 2>/dev/null \
    ; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait";
const BIG: usize = 256 * 1024;

/// Where a task container runs: the host's engine or machine B's.
#[derive(Clone, Copy)]
enum Engine<'a> {
    Host,
    Machine(&'a Machine),
}

impl Engine<'_> {
    fn docker(&self, args: &[&str]) -> swarmd_testkit::CmdOutput {
        match self {
            Engine::Host => engine_docker(args),
            Engine::Machine(m) => m.docker(args),
        }
    }

    /// The running container of `service`'s task on node `node_id`.
    fn container_of(&self, service: &str, node_id: &str) -> Result<String, String> {
        let args = task_containers_args(service, node_id);
        let out = self.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        out.success()
            .then(|| out.stdout_trimmed().lines().next().map(str::to_string))
            .flatten()
            .ok_or_else(|| format!("no running {service} container yet: {}", out.stderr))
    }

    fn exec(&self, container: &str, cmd: &[&str]) -> Result<String, String> {
        let mut args = vec!["exec", container];
        args.extend_from_slice(cmd);
        let out = self.docker(&args);
        if out.success() {
            Ok(out.stdout.clone())
        } else {
            Err(out.report("exec"))
        }
    }

    /// `GET path` of `host` port 80 from `container` (busybox `nc`: the static busybox's
    /// `wget` crashes in these images); the body.
    fn http_get(&self, container: &str, host: &str, path: &str) -> Result<String, String> {
        let out = self.exec(container, &["sh", "-c", &http_get_cmd(host, path)])?;
        http_body(&out, &format!("{host}{path}"))
    }

    /// The IPv4 addresses busybox `nslookup` gives for `name`.
    fn resolve(&self, container: &str, name: &str) -> Result<BTreeSet<String>, String> {
        let out = self.exec(container, &["nslookup", "-type=a", name])?;
        nslookup_answers(&out, name)
    }

    /// The MACs that answer a broadcast ARP request for `ip` from `container` (busybox
    /// `arping -b`: every probe is a broadcast, so each one reaches every machine the
    /// segment spans).
    fn arp_answers(&self, container: &str, ip: &str) -> Result<BTreeSet<String>, String> {
        // arping exits 1 when nothing answers; that is an empty set, not an error.
        let cmd = format!("arping -b -c 1 -I eth0 {ip}; true");
        let out = self.exec(container, &["sh", "-c", &cmd])?;
        Ok(out
            .lines()
            .filter(|l| l.contains("reply from"))
            .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_lowercase()))
            .collect())
    }

    /// The container's ARP entry for `ip` (`/proc/net/arp`), if complete.
    fn neighbour(&self, container: &str, ip: &str) -> Result<Option<String>, String> {
        let out = self.exec(container, &["cat", "/proc/net/arp"])?;
        Ok(out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // IP, HW type, Flags (0x2: complete), HW address, Mask, Device.
            (f.len() >= 4 && f[0] == ip && f[2] == "0x2").then(|| f[3].to_lowercase())
        }))
    }
}

/// The MAC of interface `ifname`, in namespace `netns` (or the host's).
fn mac_of(netns: Option<&str>, ifname: &str) -> String {
    let mut args = vec![];
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-o", "link", "show", "dev", ifname]);
    let out = std::process::Command::new("ip")
        .args(&args)
        .output()
        .expect("ip runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {ifname} in {netns:?}: {text}"))
        .to_lowercase()
}

/// The UDP port of VXLAN device `ifname`, in namespace `netns` (or the host's).
fn vxlan_port(netns: Option<&str>, ifname: &str) -> Option<String> {
    let mut args = vec![];
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-d", "-o", "link", "show", "dev", ifname]);
    let out = std::process::Command::new("ip")
        .args(&args)
        .output()
        .expect("ip runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "dstport")
        .nth(1)
        .map(str::to_string)
}

fn in_netns(netns: Option<&str>, cmd: &[&str]) -> std::process::Output {
    let mut c = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg("--");
            c.args(cmd);
            c
        }
        None => {
            let mut c = std::process::Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    };
    c.output().expect("runs")
}

/// The port `api` publishes through the routing mesh.
const MESH_PORT: u16 = 18_090;

/// One HTTP request from `netns` (or the host) to `addr:port`: the body's last line (the
/// answering task's hostname), or what went wrong.
fn mesh_get(netns: Option<&str>, addr: &str, port: u16) -> Result<String, String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {addr} {port}");
    let out = in_netns(netns, &["busybox", "sh", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.starts_with("HTTP/1.") && text.contains(" 200 ") {
        Ok(text
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string())
    } else {
        Err(format!(
            "{addr}:{port}: exit {:?}, {text:?} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether interface `ifname` exists in `netns` (or the host's).
fn has_link(netns: Option<&str>, ifname: &str) -> bool {
    in_netns(netns, &["ip", "link", "show", "dev", ifname])
        .status
        .success()
}

/// Whether the bridge-family nft table `table` exists in `netns` (or the host's).
fn has_nft_table(netns: Option<&str>, table: &str) -> bool {
    in_netns(netns, &["nft", "list", "table", "bridge", table])
        .status
        .success()
}

/// On the host, when the test ends (even on panic): the manager leaves the swarm, its
/// containers go from the host's engine, then the overlay's bridge network, and whatever
/// the manager's data plane left (its VXLAN device and gateway guard) if it could not
/// clean up itself. Machine B goes as a whole with its `Machine`.
struct HostCleanup<'a> {
    manager: Option<EngineCleanup<'a>>,
    network_id: Option<String>,
}

impl Drop for HostCleanup<'_> {
    fn drop(&mut self) {
        // The containers first (SIGKILL): leaving would stop each one gracefully.
        if let Some(m) = &self.manager {
            swarmd_testkit::cleanup_engine_containers(&format!(
                "com.docker.swarm.node.id={}",
                m.node_id
            ));
        }
        drop(self.manager.take());
        let Some(id) = &self.network_id else { return };
        let out = engine_docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.swarmd.network.id={id}"),
        ]);
        for net in out.stdout_trimmed().lines() {
            let _ = engine_docker(&["network", "rm", net]);
        }
        let short: String = id.chars().take(11).collect();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &format!("swv-{short}")])
            .output();
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "bridge", &format!("swarmd_gw_{short}")])
            .output();
    }
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn overlay_tasks_reach_each_other_across_machines_by_name_vip_and_address() {
    require_engine!();
    let started = Instant::now();
    // Progress with the time since the start, so a slow run shows where it spent it.
    let step = |what: &str| eprintln!("[{:>7.2?}] {what}", started.elapsed());
    let b = Machine::start("swm").expect("machine B (netns + dockerd) starts");
    step("machine B's engine answers, image loaded");
    let manager = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(b.host_addr())
        .executor(Executor::Docker)
        .hostname(unique_name("macha"))
        .start()
        .expect("the manager starts on the host");
    manager
        // Not Docker's default port: the overlay crosses machines on the swarm's own.
        .docker(&[
            "swarm",
            "init",
            "--dispatcher-heartbeat",
            "1s",
            "--data-path-port",
            "7790",
        ])
        .ok();
    let mut host = HostCleanup {
        manager: Some(EngineCleanup::new(&manager)),
        network_id: None,
    };
    let manager_id = host.manager.as_ref().expect("set").node_id.clone();
    let worker = join_on_machine(&manager, &b, &unique_name("machb"), "worker", &[]);
    let worker_id = worker
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])
        .ok()
        .stdout_trimmed()
        .to_string();
    wait_ready_nodes(&manager, 2);
    step("manager on A and worker on B ready");

    let net = manager
        .docker(&["network", "create", "-d", "overlay", "appnet"])
        .ok()
        .stdout_trimmed()
        .to_string();
    host.network_id = Some(net.clone());
    manager
        .docker(&[
            "service",
            "create",
            "--detach",
            "--stop-grace-period",
            "1s",
            "--network",
            "appnet",
            "--name",
            "api",
            "--mode",
            "global",
            "--publish",
            &format!("{MESH_PORT}:80"),
            "--hostname",
            "{{.Node.Hostname}}",
            "busybox:latest",
            "sh",
            "-c",
            HTTPD,
        ])
        .ok();
    let (ea, eb) = (Engine::Host, Engine::Machine(&b));
    let ca = wait_for(T, POLL, "api runs on machine A", || {
        ea.container_of("api", &manager_id)
    });
    let cb = wait_for(T, POLL, "api runs on machine B", || {
        eb.container_of("api", &worker_id)
    });
    step("api runs on both machines");
    let (name_a, name_b) = (
        manager.hostname().expect("set").to_string(),
        worker.hostname().expect("set").to_string(),
    );

    let vip = service_field(
        &manager,
        "api",
        &format!(
            "{{{{range .Endpoint.VirtualIPs}}}}{{{{if eq .NetworkID \"{net}\"}}}}{{{{.Addr}}}}{{{{end}}}}{{{{end}}}}"
        ),
    );
    let vip = vip.split('/').next().unwrap_or_default().to_string();
    assert!(!vip.is_empty(), "api has a VIP on appnet");
    let addr_of = |node: &str| -> String {
        running_tasks(&manager, "api")
            .iter()
            .find(|t| task_field(&manager, t, "{{.NodeID}}") == node)
            .map(|t| {
                // appnet's address (the task is on ingress too: api publishes a port).
                task_field(
                    &manager,
                    t,
                    &format!(
                        "{{{{range .NetworksAttachments}}}}{{{{if eq .Network.ID \"{net}\"}}}}{{{{range .Addresses}}}}{{{{.}}}}{{{{end}}}}{{{{end}}}}{{{{end}}}}"
                    ),
                )
            })
            .and_then(|a| a.split('/').next().map(str::to_string))
            .unwrap_or_else(|| panic!("no api task on {node}"))
    };
    let (addr_a, addr_b) = (addr_of(&manager_id), addr_of(&worker_id));
    let gateway = manager
        .docker(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            "appnet",
        ])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert!(!gateway.is_empty(), "appnet has a gateway");

    for (here, c, there_name, there_addr, side) in [
        (ea, &ca, &name_b, &addr_b, "A -> B"),
        (eb, &cb, &name_a, &addr_a, "B -> A"),
    ] {
        // By name: the VIP; tasks.<name>: both tasks, wherever they run.
        let got = wait_for(T, POLL, &format!("{side}: api resolves"), || {
            here.resolve(c, "api")
        });
        assert_eq!(got, BTreeSet::from([vip.clone()]), "{side}");
        let got = wait_for(T, POLL, &format!("{side}: tasks.api resolves"), || {
            here.resolve(c, "tasks.api").and_then(|s| {
                if s.len() == 2 {
                    Ok(s)
                } else {
                    Err(format!("{s:?}"))
                }
            })
        });
        assert_eq!(
            got,
            BTreeSet::from([addr_a.clone(), addr_b.clone()]),
            "{side}"
        );

        // The other machine's task at its own address, a small and a large answer.
        let body = wait_for(T, POLL, &format!("{side}: the other task answers"), || {
            here.http_get(c, there_addr, "/")
        });
        assert_eq!(body.trim(), there_name.as_str(), "{side}");
        let big = wait_for(
            T,
            POLL,
            &format!("{side}: 256 KiB from the other task"),
            || {
                here.http_get(c, there_addr, "/big").and_then(|b| {
                    if b.len() == BIG {
                        Ok(b.len())
                    } else {
                        Err(format!("{} of {BIG} bytes", b.len()))
                    }
                })
            },
        );
        assert_eq!(big, BIG);

        // Through the VIP, both tasks answer: the local one and the other machine's.
        let mut seen = BTreeSet::new();
        wait_until(
            T,
            POLL,
            &format!("{side}: both tasks answer http://api/"),
            || {
                if let Ok(body) = here.http_get(c, "api", "/") {
                    seen.insert(body.trim().to_string());
                }
                seen.len() == 2
            },
        );
        assert_eq!(
            seen,
            BTreeSet::from([name_a.clone(), name_b.clone()]),
            "{side}"
        );
        step(&format!("{side}: names, VIP, task addresses"));
    }

    // The routing mesh across machines: the published port answers on both machines'
    // node addresses, to clients on either machine, from both tasks. Clients on a node's
    // own machine go through its kernel path (a task on the other machine included);
    // clients on the other machine through its user-space listener (forwarding is not
    // the kernel path's business), which must reach both tasks too.
    let mesh_addrs = [
        (b.host_addr().to_string(), "A's address"),
        (b.addr().to_string(), "B's address"),
    ];
    for (client_ns, client) in [(None, "a client on A"), (Some(b.netns()), "a client on B")] {
        for (addr, which) in &mesh_addrs {
            let mut seen = BTreeSet::new();
            wait_for(
                T,
                POLL,
                &format!("{client} via {which}: both tasks"),
                || {
                    let body = mesh_get(client_ns, addr, MESH_PORT)
                        .map_err(|e| format!("seen {seen:?}, then {e}"))?;
                    seen.insert(body);
                    if seen.len() == 2 {
                        Ok(())
                    } else {
                        Err(format!("seen {seen:?}"))
                    }
                },
            );
            assert_eq!(
                seen,
                BTreeSet::from([name_a.clone(), name_b.clone()]),
                "{client} via {which}"
            );
        }
    }
    step("the published port answers on both machines, from both tasks");

    // The gateway is each machine's own: the same address on both bridges, but only the
    // local bridge answers for it, and the containers' entries for it stay local.
    let bridge = format!("swd-{}", net.chars().take(11).collect::<String>());
    let mac_a = mac_of(None, &bridge);
    let mac_b = mac_of(Some(b.netns()), &bridge);
    assert_ne!(mac_a, mac_b, "two bridges");
    for (here, c, mac, side) in [(ea, &ca, &mac_a, "A"), (eb, &cb, &mac_b, "B")] {
        let answers = here.arp_answers(c, &gateway).expect("arping runs");
        assert_eq!(
            answers,
            BTreeSet::from([mac.clone()]),
            "machine {side}: the gateway {gateway} is answered by the local bridge only"
        );
        let entry = here.neighbour(c, &gateway).expect("reading /proc/net/arp");
        assert_eq!(
            entry.as_deref(),
            Some(mac.as_str()),
            "machine {side}: the container's entry for the gateway is the local bridge"
        );
    }
    step("the gateway answers locally only");

    // Leaving the swarm unlinks a machine: B's VXLAN device and gateway guard go with its
    // node. A, whose task keeps running, unlinks once no task of the network runs elsewhere
    // (B's node is down), and its task then finds only itself by name.
    let short: String = net.chars().take(11).collect();
    let (vxlan, guard) = (format!("swv-{short}"), format!("swarmd_gw_{short}"));
    assert!(
        has_link(None, &vxlan) && has_nft_table(None, &guard),
        "A is linked"
    );
    assert_eq!(
        (
            vxlan_port(None, &vxlan),
            vxlan_port(Some(b.netns()), &vxlan)
        ),
        (Some("7790".to_string()), Some("7790".to_string())),
        "both machines' VXLAN devices use the swarm's --data-path-port"
    );
    worker.docker(&["swarm", "leave", "--force"]).ok();
    wait_until(T, POLL, "machine B unlinked after leaving", || {
        !has_link(Some(b.netns()), &vxlan) && !has_nft_table(Some(b.netns()), &guard)
    });
    wait_until(T, POLL, "machine A unlinked with no peer left", || {
        !has_link(None, &vxlan) && !has_nft_table(None, &guard)
    });
    let got = wait_for(T, POLL, "tasks.api is A's task alone", || {
        ea.resolve(&ca, "tasks.api").and_then(|s| {
            if s.len() == 1 {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        })
    });
    assert_eq!(got, BTreeSet::from([addr_a.clone()]));
    assert_eq!(
        ea.http_get(&ca, "api", "/").map(|b| b.trim().to_string()),
        Ok(name_a.clone())
    );
    step("B unlinked on leaving, A once alone; A finds only its task");
    drop(host);
    step("host side cleaned up");
    drop(worker);
    drop(b);
    step("machine B removed");
}
