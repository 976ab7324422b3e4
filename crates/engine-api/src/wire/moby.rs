//! The daemon's answer types, transcribed from moby v28.2 (`api/types/swarm/*.go`,
//! `container.HealthConfig`, `mount.Mount`, `units.Ulimit`), field by field in Go's order.
//! `o` marks a field tagged `omitempty`, `a` one without. Where the daemon's converters
//! (`daemon/cluster/convert`) fill or withhold a field, the comment says so.

use super::Ty::{self, *};
use super::{F, a, o};

const EMPTY: &[F] = &[];
const VERSION: &[F] = &[o("Index", Num)];
const DRIVER: &[F] = &[o("Name", Str), o("Options", Map(&Str))];
const TLS_INFO: &[F] = &[
    o("TrustRoot", Str),
    o("CertIssuerSubject", Raw),
    o("CertIssuerPublicKey", Raw),
];
const PLATFORM: &[F] = &[o("Architecture", Str), o("OS", Str)];

// ---- container.go
const DNS_CONFIG: &[F] = &[
    o("Nameservers", Slice(&Str)),
    o("Search", Slice(&Str)),
    o("Options", Slice(&Str)),
];
const SELINUX_CONTEXT: &[F] = &[
    a("Disable", Bool),
    a("User", Str),
    a("Role", Str),
    a("Type", Str),
    a("Level", Str),
];
const CREDENTIAL_SPEC: &[F] = &[a("Config", Str), a("File", Str), a("Registry", Str)];
const PRIVILEGES: &[F] = &[
    a("CredentialSpec", Ptr(&Struct(CREDENTIAL_SPEC))),
    a("SELinuxContext", Ptr(&Struct(SELINUX_CONTEXT))),
    o(
        "Seccomp",
        Ptr(&Struct(&[o("Mode", Str), o("Profile", Raw)])),
    ),
    o("AppArmor", Ptr(&Struct(&[o("Mode", Str)]))),
    a("NoNewPrivileges", Bool),
];
/// `container.HealthConfig` (the image spec's `HealthcheckConfig`).
const HEALTH_CONFIG: &[F] = &[
    o("Test", Slice(&Str)),
    o("Interval", Num),
    o("Timeout", Num),
    o("StartPeriod", Num),
    o("StartInterval", Num),
    o("Retries", Num),
];
const BIND_OPTIONS: &[F] = &[
    o("Propagation", Str),
    o("NonRecursive", Bool),
    o("CreateMountpoint", Bool),
    o("ReadOnlyNonRecursive", Bool),
    o("ReadOnlyForceRecursive", Bool),
];
const VOLUME_OPTIONS: &[F] = &[
    o("NoCopy", Bool),
    o("Labels", Map(&Str)),
    o("Subpath", Str),
    o("DriverConfig", Ptr(&Struct(DRIVER))),
];
const TMPFS_OPTIONS: &[F] = &[o("SizeBytes", Num), o("Mode", Num), o("Options", Raw)];
/// `mount.Mount`.
const MOUNT: &[F] = &[
    o("Type", Str),
    o("Source", Str),
    o("Target", Str),
    o("ReadOnly", Bool),
    o("Consistency", Str),
    o("BindOptions", Ptr(&Struct(BIND_OPTIONS))),
    o("VolumeOptions", Ptr(&Struct(VOLUME_OPTIONS))),
    o("ImageOptions", Ptr(&Struct(&[o("Subpath", Str)]))),
    o("TmpfsOptions", Ptr(&Struct(TMPFS_OPTIONS))),
    o("ClusterOptions", Ptr(&Struct(EMPTY))),
];
const FILE_TARGET: &[F] = &[a("Name", Str), a("UID", Str), a("GID", Str), a("Mode", Num)];
const SECRET_REFERENCE: &[F] = &[
    a("File", Ptr(&Struct(FILE_TARGET))),
    a("SecretID", Str),
    a("SecretName", Str),
];
const CONFIG_REFERENCE: &[F] = &[
    o("File", Ptr(&Struct(FILE_TARGET))),
    o("Runtime", Ptr(&Struct(EMPTY))),
    a("ConfigID", Str),
    a("ConfigName", Str),
];
const ULIMIT: &[F] = &[a("Name", Str), a("Hard", Num), a("Soft", Num)];
const CONTAINER_SPEC: &[F] = &[
    o("Image", Str),
    o("Labels", Map(&Str)),
    o("Command", Slice(&Str)),
    o("Args", Slice(&Str)),
    o("Hostname", Str),
    o("Env", Slice(&Str)),
    o("Dir", Str),
    o("User", Str),
    o("Groups", Slice(&Str)),
    o("Privileges", Ptr(&Struct(PRIVILEGES))),
    o("Init", Ptr(&Bool)),
    o("StopSignal", Str),
    o("TTY", Bool),
    o("OpenStdin", Bool),
    o("ReadOnly", Bool),
    o("Mounts", Slice(&Struct(MOUNT))),
    o("StopGracePeriod", Ptr(&Num)),
    // The swagger calls it `HealthCheck`; the daemon writes the Go name.
    o("Healthcheck", Ptr(&Struct(HEALTH_CONFIG))),
    o("Hosts", Slice(&Str)),
    o("DNSConfig", Ptr(&Struct(DNS_CONFIG))),
    o("Secrets", Slice(&Ptr(&Struct(SECRET_REFERENCE)))),
    o("Configs", Slice(&Ptr(&Struct(CONFIG_REFERENCE)))),
    o("Isolation", Str),
    o("Sysctls", Map(&Str)),
    o("CapabilityAdd", Slice(&Str)),
    o("CapabilityDrop", Slice(&Str)),
    o("Ulimits", Slice(&Ptr(&Struct(ULIMIT)))),
    o("OomScoreAdj", Num),
];

// ---- task.go
/// `runtime.PluginSpec` (protobuf-generated, lower-case JSON names).
const PLUGIN_SPEC: &[F] = &[
    o("name", Str),
    o("remote", Str),
    o("privileges", Raw),
    o("disabled", Bool),
    o("env", Slice(&Str)),
];
const GENERIC_RESOURCE: &[F] = &[
    o(
        "NamedResourceSpec",
        Ptr(&Struct(&[o("Kind", Str), o("Value", Str)])),
    ),
    o(
        "DiscreteResourceSpec",
        Ptr(&Struct(&[o("Kind", Str), o("Value", Num)])),
    ),
];
const RESOURCES: &[F] = &[
    o("NanoCPUs", Num),
    o("MemoryBytes", Num),
    o("GenericResources", Slice(&Struct(GENERIC_RESOURCE))),
];
const LIMIT: &[F] = &[o("NanoCPUs", Num), o("MemoryBytes", Num), o("Pids", Num)];
const RESOURCE_REQUIREMENTS: &[F] = &[
    o("Limits", Ptr(&Struct(LIMIT))),
    o("Reservations", Ptr(&Struct(RESOURCES))),
    // API 1.52's additions (`omitzero`), kept so a value a client set reads back.
    o("SwapBytes", Ptr(&Num)),
    o("MemorySwappiness", Ptr(&Num)),
];
const PLACEMENT: &[F] = &[
    o("Constraints", Slice(&Str)),
    o(
        "Preferences",
        Slice(&Struct(&[a(
            "Spread",
            Ptr(&Struct(&[a("SpreadDescriptor", Str)])),
        )])),
    ),
    o("MaxReplicas", Num),
    o("Platforms", Slice(&Struct(PLATFORM))),
];
const RESTART_POLICY: &[F] = &[
    o("Condition", Str),
    o("Delay", Ptr(&Num)),
    o("MaxAttempts", Ptr(&Num)),
    o("Window", Ptr(&Num)),
];
const NETWORK_ATTACHMENT_CONFIG: &[F] = &[
    o("Target", Str),
    o("Aliases", Slice(&Str)),
    o("DriverOpts", Map(&Str)),
];
const TASK_SPEC: &[F] = &[
    o("ContainerSpec", Ptr(&Struct(CONTAINER_SPEC))),
    o("PluginSpec", Ptr(&Struct(PLUGIN_SPEC))),
    o(
        "NetworkAttachmentSpec",
        Ptr(&Struct(&[a("ContainerID", Str)])),
    ),
    o("Resources", Ptr(&Struct(RESOURCE_REQUIREMENTS))),
    o("RestartPolicy", Ptr(&Struct(RESTART_POLICY))),
    o("Placement", Ptr(&Struct(PLACEMENT))),
    o("Networks", Slice(&Struct(NETWORK_ATTACHMENT_CONFIG))),
    o("LogDriver", Ptr(&Struct(DRIVER))),
    a("ForceUpdate", Num),
    o("Runtime", Str),
];
const PORT_CONFIG: &[F] = &[
    o("Name", Str),
    o("Protocol", Str),
    o("TargetPort", Num),
    o("PublishedPort", Num),
    o("PublishMode", Str),
];
const TASK_STATUS: &[F] = &[
    o("Timestamp", Time),
    o("State", Str),
    o("Message", Str),
    o("Err", Str),
    o(
        "ContainerStatus",
        Ptr(&Struct(&[
            a("ContainerID", Str),
            a("PID", Num),
            a("ExitCode", Num),
        ])),
    ),
    o(
        "PortStatus",
        Struct(&[o("Ports", Slice(&Struct(PORT_CONFIG)))]),
    ),
];

// ---- network.go
const ENDPOINT_SPEC: &[F] = &[o("Mode", Str), o("Ports", Slice(&Struct(PORT_CONFIG)))];
const ENDPOINT: &[F] = &[
    o("Spec", Struct(ENDPOINT_SPEC)),
    o("Ports", Slice(&Struct(PORT_CONFIG))),
    o(
        "VirtualIPs",
        Slice(&Struct(&[o("NetworkID", Str), o("Addr", Str)])),
    ),
];
const IPAM_OPTIONS: &[F] = &[
    o("Driver", Struct(DRIVER)),
    o(
        "Configs",
        Slice(&Struct(&[
            o("Subnet", Str),
            o("Range", Str),
            o("Gateway", Str),
        ])),
    ),
];
const NETWORK_SPEC: &[F] = &[
    o("Name", Str),
    a("Labels", Labels),
    o("DriverConfiguration", Ptr(&Struct(DRIVER))),
    o("IPv6Enabled", Bool),
    o("Internal", Bool),
    o("Attachable", Bool),
    o("Ingress", Bool),
    o("IPAMOptions", Ptr(&Struct(IPAM_OPTIONS))),
    o("ConfigFrom", Ptr(&Struct(&[a("Network", Str)]))),
    o("Scope", Str),
];
/// `swarm.Network`, as a task's network attachment carries it.
const SWARM_NETWORK: &[F] = &[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    o("Spec", Struct(NETWORK_SPEC)),
    o("DriverState", Struct(DRIVER)),
    o("IPAMOptions", Ptr(&Struct(IPAM_OPTIONS))),
];
const NETWORK_ATTACHMENT: &[F] = &[
    o("Network", Struct(SWARM_NETWORK)),
    o("Addresses", Slice(&Str)),
];

/// `swarm.Task`.
pub const TASK: Ty = Struct(&[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    o("Name", Str),
    a("Labels", Labels),
    o("Spec", Struct(TASK_SPEC)),
    o("ServiceID", Str),
    o("Slot", Num),
    o("NodeID", Str),
    o("Status", Struct(TASK_STATUS)),
    o("DesiredState", Str),
    o("NetworksAttachments", Slice(&Struct(NETWORK_ATTACHMENT))),
    o("GenericResources", Slice(&Struct(GENERIC_RESOURCE))),
    o("JobIteration", Ptr(&Struct(VERSION))),
    a(
        "Volumes",
        Slice(&Struct(&[o("ID", Str), o("Source", Str), o("Target", Str)])),
    ),
]);

// ---- service.go
const REPLICATED_JOB: &[F] = &[
    o("MaxConcurrent", Ptr(&Num)),
    o("TotalCompletions", Ptr(&Num)),
];
const SERVICE_MODE: &[F] = &[
    o("Replicated", Ptr(&Struct(&[o("Replicas", Ptr(&Num))]))),
    o("Global", Ptr(&Struct(EMPTY))),
    o("ReplicatedJob", Ptr(&Struct(REPLICATED_JOB))),
    o("GlobalJob", Ptr(&Struct(EMPTY))),
];
const UPDATE_CONFIG: &[F] = &[
    a("Parallelism", Num),
    o("Delay", Num),
    o("FailureAction", Str),
    o("Monitor", Num),
    a("MaxFailureRatio", Num),
    a("Order", Str),
];
const SERVICE_SPEC: &[F] = &[
    o("Name", Str),
    a("Labels", Labels),
    o("TaskTemplate", Struct(TASK_SPEC)),
    o("Mode", Struct(SERVICE_MODE)),
    o("UpdateConfig", Ptr(&Struct(UPDATE_CONFIG))),
    o("RollbackConfig", Ptr(&Struct(UPDATE_CONFIG))),
    // Deprecated in favour of `TaskTemplate.Networks`, still in 1.50's type.
    o("Networks", Slice(&Struct(NETWORK_ATTACHMENT_CONFIG))),
    o("EndpointSpec", Ptr(&Struct(ENDPOINT_SPEC))),
];
const UPDATE_STATUS: &[F] = &[
    o("State", Str),
    o("StartedAt", Ptr(&Time)),
    o("CompletedAt", Ptr(&Time)),
    o("Message", Str),
];

/// `swarm.Service`.
pub const SERVICE: Ty = Struct(&[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    o("Spec", Struct(SERVICE_SPEC)),
    o("PreviousSpec", Ptr(&Struct(SERVICE_SPEC))),
    o("Endpoint", Struct(ENDPOINT)),
    o("UpdateStatus", Ptr(&Struct(UPDATE_STATUS))),
    o(
        "ServiceStatus",
        Ptr(&Struct(&[
            a("RunningTasks", Num),
            a("DesiredTasks", Num),
            a("CompletedTasks", Num),
        ])),
    ),
    o(
        "JobStatus",
        Ptr(&Struct(&[
            a("JobIteration", Struct(VERSION)),
            o("LastExecution", Time),
        ])),
    ),
]);

// ---- node.go
const NODE_DESCRIPTION: &[F] = &[
    o("Hostname", Str),
    o("Platform", Struct(PLATFORM)),
    o("Resources", Struct(RESOURCES)),
    o(
        "Engine",
        Struct(&[
            o("EngineVersion", Str),
            o("Labels", Map(&Str)),
            o("Plugins", Slice(&Struct(&[o("Type", Str), o("Name", Str)]))),
        ]),
    ),
    o("TLSInfo", Struct(TLS_INFO)),
    o(
        "CSIInfo",
        Slice(&Struct(&[
            o("PluginName", Str),
            o("NodeID", Str),
            o("MaxVolumesPerNode", Num),
            o(
                "AccessibleTopology",
                Ptr(&Struct(&[o("Segments", Map(&Str))])),
            ),
        ])),
    ),
];

/// `swarm.Node`.
pub const NODE: Ty = Struct(&[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    o(
        "Spec",
        Struct(&[
            o("Name", Str),
            a("Labels", Labels),
            o("Role", Str),
            o("Availability", Str),
        ]),
    ),
    o("Description", Struct(NODE_DESCRIPTION)),
    o(
        "Status",
        Struct(&[o("State", Str), o("Message", Str), o("Addr", Str)]),
    ),
    o(
        "ManagerStatus",
        Ptr(&Struct(&[
            o("Leader", Bool),
            o("Reachability", Str),
            o("Addr", Str),
        ])),
    ),
]);

// ---- secret.go, config.go
/// `swarm.Secret`.
pub const SECRET: Ty = Struct(&[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    a(
        "Spec",
        Struct(&[
            o("Name", Str),
            a("Labels", Labels),
            o("Data", Raw),
            o("Driver", Ptr(&Struct(DRIVER))),
            o("Templating", Ptr(&Struct(DRIVER))),
        ]),
    ),
]);

/// `swarm.Config`.
pub const CONFIG: Ty = Struct(&[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    a(
        "Spec",
        Struct(&[
            o("Name", Str),
            a("Labels", Labels),
            o("Data", Raw),
            o("Templating", Ptr(&Struct(DRIVER))),
        ]),
    ),
]);

// ---- swarm.go
/// `swarm.CAConfig` as `SwarmFromGRPC` fills it: never `SigningCACert` nor `SigningCAKey`
/// ("the key because it's secret, and the cert because otherwise doing a get + update on
/// the spec can cause issues").
const CA_CONFIG: &[F] = &[
    o("NodeCertExpiry", Num),
    o(
        "ExternalCAs",
        Slice(&Ptr(&Struct(&[
            a("Protocol", Str),
            a("URL", Str),
            o("Options", Map(&Str)),
            a("CACert", Str),
        ]))),
    ),
    o("ForceRotate", Num),
];
const RAFT_CONFIG: &[F] = &[
    o("SnapshotInterval", Num),
    o("KeepOldSnapshots", Ptr(&Num)),
    o("LogEntriesForSlowFollowers", Num),
    a("ElectionTick", Num),
    a("HeartbeatTick", Num),
];
const SWARM_SPEC: &[F] = &[
    o("Name", Str),
    a("Labels", Labels),
    o(
        "Orchestration",
        Struct(&[o("TaskHistoryRetentionLimit", Ptr(&Num))]),
    ),
    o("Raft", Struct(RAFT_CONFIG)),
    o("Dispatcher", Struct(&[o("HeartbeatPeriod", Num)])),
    o("CAConfig", Struct(CA_CONFIG)),
    o(
        "TaskDefaults",
        Struct(&[o("LogDriver", Ptr(&Struct(DRIVER)))]),
    ),
    o("EncryptionConfig", Struct(&[a("AutoLockManagers", Bool)])),
];
const CLUSTER_INFO: &[F] = &[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    a("Spec", Struct(SWARM_SPEC)),
    a("TLSInfo", Struct(TLS_INFO)),
    a("RootRotationInProgress", Bool),
    a("DefaultAddrPool", Slice(&Str)),
    a("SubnetSize", Num),
    a("DataPathPort", Num),
];

/// `swarm.Swarm` (`GET /swarm`): the cluster info and the join tokens.
pub const SWARM: Ty = Struct(&[
    a("ID", Str),
    o("Version", Struct(VERSION)),
    o("CreatedAt", Time),
    o("UpdatedAt", Time),
    a("Spec", Struct(SWARM_SPEC)),
    a("TLSInfo", Struct(TLS_INFO)),
    a("RootRotationInProgress", Bool),
    a("DefaultAddrPool", Slice(&Str)),
    a("SubnetSize", Num),
    a("DataPathPort", Num),
    a("JoinTokens", Struct(&[a("Worker", Str), a("Manager", Str)])),
]);

/// `swarm.Info`, the `Swarm` block of `GET /info`.
pub const SWARM_INFO: Ty = Struct(&[
    a("NodeID", Str),
    a("NodeAddr", Str),
    a("LocalNodeState", Str),
    a("ControlAvailable", Bool),
    a("Error", Str),
    a(
        "RemoteManagers",
        Slice(&Struct(&[a("NodeID", Str), a("Addr", Str)])),
    ),
    o("Nodes", Num),
    o("Managers", Num),
    o("Cluster", Ptr(&Struct(CLUSTER_INFO))),
    o("Warnings", Slice(&Str)),
]);

// ---- api/types/network
const NETWORK_IPAM: &[F] = &[
    a("Driver", Str),
    a("Options", Map(&Str)),
    a(
        "Config",
        Slice(&Struct(&[
            o("Subnet", Str),
            o("IPRange", Str),
            o("Gateway", Str),
            o("AuxiliaryAddresses", Map(&Str)),
        ])),
    ),
];

/// `network.Inspect` (`network.Summary` in lists): how `docker network ls/inspect` see a
/// swarm network.
pub const NETWORK: Ty = Struct(&[
    a("Name", Str),
    a("Id", Str),
    a("Created", Time),
    a("Scope", Str),
    a("Driver", Str),
    a("EnableIPv4", Bool),
    a("EnableIPv6", Bool),
    a("IPAM", Struct(NETWORK_IPAM)),
    a("Internal", Bool),
    a("Attachable", Bool),
    a("Ingress", Bool),
    a("ConfigFrom", Struct(&[a("Network", Str)])),
    a("ConfigOnly", Bool),
    a(
        "Containers",
        Map(&Struct(&[
            a("Name", Str),
            a("EndpointID", Str),
            a("MacAddress", Str),
            a("IPv4Address", Str),
            a("IPv6Address", Str),
        ])),
    ),
    a("Options", Map(&Str)),
    a("Labels", Map(&Str)),
    o("Peers", Slice(&Struct(&[a("Name", Str), a("IP", Str)]))),
    o("Services", Map(&Raw)),
]);

// ---- api/types/types.go
/// `types.Version` (`GET /version`).
pub const SYSTEM_VERSION: Ty = Struct(&[
    o("Platform", Struct(&[a("Name", Str)])),
    o(
        "Components",
        Slice(&Struct(&[
            a("Name", Str),
            a("Version", Str),
            o("Details", Map(&Str)),
        ])),
    ),
    a("Version", Str),
    a("ApiVersion", Str),
    o("MinAPIVersion", Str),
    a("GitCommit", Str),
    a("GoVersion", Str),
    a("Os", Str),
    a("Arch", Str),
    o("KernelVersion", Str),
    o("Experimental", Bool),
    o("BuildTime", Str),
]);
