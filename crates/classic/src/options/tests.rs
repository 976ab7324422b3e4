//! Defaults and classic's validation of `swarmd manage` flags.

use super::*;

fn args() -> ManageArgs {
    ManageArgs {
        discovery: Some("nodes://10.0.0.1:2375".into()),
        ..Default::default()
    }
}

fn err(a: ManageArgs) -> String {
    ManageOptions::from_args(&a).unwrap_err().to_string()
}

#[test]
fn classic_defaults() {
    let o = ManageOptions::from_args(&args()).unwrap();
    assert_eq!(o.hosts, [ListenAddr::Tcp("127.0.0.1:2375".into())]);
    assert_eq!(o.strategy, Strategy::Spread);
    assert_eq!(o.filters, FilterKind::ALL);
    assert_eq!(o.heartbeat, Duration::from_secs(60));
    assert_eq!(o.refresh.min, Duration::from_secs(30));
    assert_eq!(o.refresh.max, Duration::from_secs(60));
    assert_eq!(o.failure_retry, 3);
    assert_eq!(o.cluster, ClusterOpts::default());
    assert_eq!(o.tls, None);
    assert!(matches!(o.discovery, Discovery::Nodes(ref n) if n.len() == 1));
}

#[test]
fn discovery_required() {
    let a = ManageArgs {
        discovery: None,
        ..args()
    };
    assert_eq!(
        err(a),
        "discovery required to manage a cluster. See 'swarmd manage --help'."
    );
}

#[test]
fn hosts_replace_default_and_repeat() {
    let a = ManageArgs {
        hosts: vec!["tcp://0.0.0.0:3375".into(), "unix:///run/s.sock".into()],
        ..args()
    };
    let o = ManageOptions::from_args(&a).unwrap();
    assert_eq!(
        o.hosts,
        [
            ListenAddr::Tcp("0.0.0.0:3375".into()),
            ListenAddr::Unix("/run/s.sock".into())
        ]
    );
    let a = ManageArgs {
        hosts: vec!["fd://3".into()],
        ..args()
    };
    assert_eq!(err(a), "unsupported protocol: \"fd\"");
}

#[test]
fn strategy_flag() {
    let a = ManageArgs {
        strategy: Some("binpack".into()),
        ..args()
    };
    assert_eq!(
        ManageOptions::from_args(&a).unwrap().strategy,
        Strategy::Binpack
    );
    let a = ManageArgs {
        strategy: Some("pack".into()),
        ..args()
    };
    assert_eq!(err(a), "strategy not supported");
}

#[test]
fn filters_replace_defaults_in_given_order() {
    let a = ManageArgs {
        filters: vec!["constraint".into(), "health".into(), "constraint".into()],
        ..args()
    };
    let o = ManageOptions::from_args(&a).unwrap();
    assert_eq!(o.filters, [FilterKind::Constraint, FilterKind::Health]);
    let a = ManageArgs {
        filters: vec!["health".into(), "nope".into()],
        ..args()
    };
    assert_eq!(err(a), "filter not supported");
}

#[test]
fn heartbeat_rules() {
    let a = ManageArgs {
        heartbeat: Some("5s".into()),
        ..args()
    };
    assert_eq!(
        ManageOptions::from_args(&a).unwrap().heartbeat,
        Duration::from_secs(5)
    );
    let a = ManageArgs {
        heartbeat: Some("1s".into()),
        ..args()
    };
    assert!(
        ManageOptions::from_args(&a).is_ok(),
        "one second is allowed"
    );
    let a = ManageArgs {
        heartbeat: Some("999ms".into()),
        ..args()
    };
    assert_eq!(err(a), "--heartbeat should be at least one second");
    let a = ManageArgs {
        heartbeat: Some("ten".into()),
        ..args()
    };
    assert_eq!(
        err(a),
        "invalid --heartbeat: time: invalid duration \"ten\""
    );
}

#[test]
fn refresh_interval_rules() {
    let a = ManageArgs {
        refresh_min: Some("0s".into()),
        ..args()
    };
    assert_eq!(err(a), "min refresh interval should be a positive number");
    let a = ManageArgs {
        refresh_min: Some("-1s".into()),
        ..args()
    };
    assert_eq!(err(a), "min refresh interval should be a positive number");
    let a = ManageArgs {
        refresh_min: Some("90s".into()),
        ..args()
    };
    assert_eq!(
        err(a),
        "max refresh interval cannot be less than min refresh interval"
    );
    let a = ManageArgs {
        refresh_min: Some("45s".into()),
        refresh_max: Some("45s".into()),
        ..args()
    };
    let o = ManageOptions::from_args(&a).unwrap();
    assert_eq!(
        (o.refresh.min, o.refresh.max),
        (Duration::from_secs(45), Duration::from_secs(45))
    );
    let a = ManageArgs {
        refresh_max: Some("1x".into()),
        ..args()
    };
    assert_eq!(
        err(a),
        "invalid --engine-refresh-max-interval: time: unknown unit \"x\" in duration \"1x\""
    );
}

#[test]
fn failure_retry_rules() {
    let a = ManageArgs {
        failure_retry: Some(5),
        ..args()
    };
    assert_eq!(ManageOptions::from_args(&a).unwrap().failure_retry, 5);
    for n in [0, -1, i64::from(u32::MAX) + 1] {
        let a = ManageArgs {
            failure_retry: Some(n),
            ..args()
        };
        assert_eq!(err(a), "invalid failure retry count");
    }
}

#[test]
fn cluster_opts_flow_through() {
    let a = ManageArgs {
        cluster_opts: vec!["swarm.createretry=3".into()],
        ..args()
    };
    assert_eq!(
        ManageOptions::from_args(&a).unwrap().cluster.create_retry,
        3
    );
    let a = ManageArgs {
        cluster_opts: vec!["swarm.foo=1".into()],
        ..args()
    };
    assert!(err(a).starts_with("unsupported --cluster-opt \"swarm.foo\""));
}

#[test]
fn tls_rules() {
    let files = |a: ManageArgs| ManageArgs {
        tlscert: Some("cert.pem".into()),
        tlskey: Some("key.pem".into()),
        ..a
    };
    let a = ManageArgs {
        tls: true,
        ..args()
    };
    assert_eq!(
        err(a),
        "--tlscert and --tlskey must be provided when using --tls"
    );
    let a = ManageArgs {
        tlsverify: true,
        tlskey: Some("k".into()),
        ..args()
    };
    assert_eq!(
        err(a),
        "--tlscert and --tlskey must be provided when using --tls"
    );
    let a = files(ManageArgs {
        tlsverify: true,
        ..args()
    });
    assert_eq!(
        err(a),
        "--tlscacert must be provided when using --tlsverify"
    );
    let a = ManageArgs {
        tlscacert: Some("ca.pem".into()),
        ..args()
    };
    assert_eq!(
        err(a),
        "--tlscert, --tlskey and --tlscacert require the use of either --tls or --tlsverify"
    );

    let o = ManageOptions::from_args(&files(ManageArgs {
        tls: true,
        ..args()
    }))
    .unwrap();
    assert_eq!(
        o.tls,
        Some(TlsOptions {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            ca: None,
            verify: false
        })
    );
    let a = files(ManageArgs {
        tlsverify: true,
        tlscacert: Some("ca.pem".into()),
        ..args()
    });
    let tls = ManageOptions::from_args(&a).unwrap().tls.unwrap();
    assert!(tls.verify);
    assert_eq!(tls.ca.as_deref(), Some("ca.pem"));
}
