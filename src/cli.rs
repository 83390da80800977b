//! The `airgate` command: `serve`, `validate`, `crds`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::{FailurePolicy, IpNet, RateLimiter};
use crate::app::reload::{ReloadParts, Reloader, RollbackPolicy};
use crate::app::signature::{self, BundleKey};
use crate::app::{self, check_secrets, Models, Process, Signing};
use crate::body::BodyBudget;
use crate::cache::Embedder;
use crate::cluster::{self, leader::LeaseSettings, ClusterSettings, StartParts};
use crate::config::{self, ConfigIssue, LoadedConfig};
use crate::policy::gate;
use crate::policy::report::Format;
use crate::routing::BackendTrust;
use crate::server::tls::{ServerTls, ServerTlsSettings};
use crate::server::{self, AppState, ServerLimits, Shutdown};
use crate::shutdown::WRITER_FLUSH;
use crate::telemetry::access_log::{AccessLog, AccessTarget, HeaderMode, HeaderRules};
use crate::telemetry::audit::{
    self, AuditConfig, AuditEvent, AuditFormat, AuditLog, AuditTarget, SyslogConfig, TlsConfig,
};
use crate::telemetry::tracing::{self as otel, OtlpProtocol, TracingSettings};
use crate::telemetry::Metrics;

#[derive(Debug, Parser)]
#[command(
    name = "airgate",
    version,
    about = "An OpenAI-compatible AI gateway for air-gapped clusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Check configuration files against the schema and the rule packs (baseline, and pci-dss
    /// or hipaa where a `compliance` label asks); exit 1 on any error finding, 0 on warnings
    /// only. See docs/policy.md for every rule.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also read every secret the resources name from this folder (laid out as `serve`
        /// reads it) and report each one that is missing or unusable.
        #[arg(long)]
        secrets_dir: Option<PathBuf>,
        /// User rules in CEL: a YAML list of {id, match, expression, message, severity}.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// `text` (one line per finding), `json`, or `sarif` (SARIF 2.1.0, for code scanning).
        #[arg(long, default_value = "text", value_parser = Format::NAMES)]
        format: String,
    },
    /// The breaking changes from OLD to NEW (files or folders), in the routing contract and in
    /// the `API`s' OpenAPI specs: exit 0 when there are none, 1 when there are, 2 when either
    /// does not load or NEW's spec cannot be read. See docs/policy.md for the checks.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// `text` (one line per change, as `validate` prints), `json`, or `sarif` (SARIF 2.1.0,
        /// each breaking change an error on its file and line).
        #[arg(long, default_value = "text", value_parser = Format::NAMES)]
        format: String,
    },
    /// Print the CustomResourceDefinitions of AIGateway and API.
    Crds {
        /// The API group: airgate.io, or hub.traefik.io for the seed's manifests in a cluster
        /// without Traefik Hub.
        #[arg(long, default_value = "airgate.io", value_parser = ["airgate.io", "hub.traefik.io"])]
        group: String,
    },
    /// Audit-log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Signed configuration bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Verify a bundle's signature as `serve --config-public-key` does (cosign's formats:
    /// base64 signature, PEM ECDSA P-256 or Ed25519 public key); exit 0 when it verifies, 1
    /// otherwise.
    Verify {
        /// PEM public key.
        #[arg(long)]
        key: PathBuf,
        /// Base64 signature over the bundle's bytes (`cosign sign-blob`'s output).
        #[arg(long)]
        signature: PathBuf,
        bundle: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of audit files (rotated files oldest first); exit 0 when intact,
    /// 1 with the first broken record otherwise.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A YAML file or a folder of YAML files (multi-document) with AIGateway and API resources.
    /// Watched: changes are applied without a restart (and on SIGHUP).
    #[arg(
        long,
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    pub config: Option<PathBuf>,
    /// Cluster mode: read AIGateway and API resources (groups airgate.io and hub.traefik.io)
    /// and the Secrets they name from the Kubernetes API (the pod's service account, else
    /// KUBECONFIG), apply every change, and write their status (docs/kubernetes.md).
    #[arg(long)]
    pub kubernetes: bool,
    /// Cluster mode: watch only this namespace (repeatable); every namespace by default.
    #[arg(long = "watch-namespace", requires = "kubernetes")]
    pub watch_namespaces: Vec<String>,
    /// Cluster mode: `NAMESPACE/NAME` of the only AIGateway that serves `/v1`, annotated as
    /// the default or not; any other annotated `airgate.io/default` is refused. Set it in a
    /// cluster where several teams may create AIGateways.
    #[arg(long, requires = "kubernetes")]
    pub default_gateway: Option<String>,
    /// Cluster mode: the namespace of the leader-election Lease; default POD_NAMESPACE, then
    /// the kubeconfig context's namespace.
    #[arg(long, requires = "kubernetes")]
    pub leader_election_namespace: Option<String>,
    /// Cluster mode: the name of the leader-election Lease.
    #[arg(long, default_value = "airgate-leader")]
    pub leader_election_lease: String,
    /// Cluster mode: how often a kind the API server does not serve (its CRD not installed) is
    /// looked for again; it is watched once it is served.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub kubernetes_discovery_interval: std::time::Duration,
    /// Cluster mode: how long a leader's Lease holds without renewal before another replica
    /// takes it over (renewed every third of it).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_lease_duration: std::time::Duration,
    /// Refuse a `--config` file whose signature does not verify against this PEM public key
    /// (ECDSA P-256 as `cosign generate-key-pair` writes it, or Ed25519), at start and at
    /// every reload. A folder cannot be signed.
    #[arg(long, conflicts_with = "kubernetes")]
    pub config_public_key: Option<PathBuf>,
    /// After a reload, how long the new configuration's answers are watched for a rollback.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub rollback_window: std::time::Duration,
    /// Answers a reloaded configuration must have given before its error share counts.
    #[arg(long, default_value_t = 20)]
    pub rollback_min_requests: u64,
    /// Roll a reloaded configuration back when its share of 5xx answers (the gateway's own
    /// 502/503/504 included) is above this and above the previous configuration's; 0 turns
    /// rollback off.
    #[arg(long, default_value_t = 0.05)]
    pub rollback_error_ratio: f64,
    /// The base64 signature over the `--config` file's bytes (`cosign sign-blob`'s output).
    /// Default: `<config>.sig`.
    #[arg(long, requires = "config_public_key")]
    pub config_signature: Option<PathBuf>,
    /// Public listener (the OpenAI-compatible API).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Admin listener (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Audit log: a file (JSON lines, appended, hash-chained), `-` for stdout, `off`,
    /// `syslog+tcp://host:port` or `syslog+tls://host:port` (RFC 5424/5425).
    #[arg(long, default_value = "-")]
    pub audit_log: String,
    /// Audit record format.
    #[arg(long, value_enum, default_value = "json")]
    pub audit_format: AuditFormatArg,
    /// Rotate the audit file before it grows past this size (e.g. `100MiB`).
    #[arg(long)]
    pub audit_rotate_size: Option<String>,
    /// Rotated audit files kept.
    #[arg(long, default_value_t = 5)]
    pub audit_keep_files: usize,
    /// CA certificates (PEM) the syslog collector's certificate must chain to (`syslog+tls`).
    #[arg(long)]
    pub audit_syslog_ca: Option<PathBuf>,
    /// Name the syslog collector's certificate must be valid for (default: the host).
    #[arg(long)]
    pub audit_syslog_server_name: Option<String>,
    /// Secrets named by `secretName`, as Kubernetes mounts them: one folder per secret, one file
    /// per key. With --kubernetes, the folder the watched Secrets are written to (one folder per
    /// namespace above them): it must be empty at first start and memory-backed.
    #[arg(long, default_value = "/var/run/secrets/airgate")]
    pub secrets_dir: PathBuf,
    /// Share rate limits and token budgets between replicas through this Redis
    /// (`redis://host:6379`); in memory when absent.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// What to do when Redis is unreachable: let requests through or refuse them.
    #[arg(long, value_enum, default_value = "fail-open")]
    pub redis_failure_policy: RedisPolicyArg,
    /// Access log, one JSON line per request: a file, `-` for stdout, or `off`.
    #[arg(long, default_value = "off")]
    pub access_log: String,
    /// Request headers in the access log by default: `drop`, `keep` or `redact`
    /// (`Authorization` and `Cookie` are never logged in clear).
    #[arg(long, default_value = "drop")]
    pub access_log_headers: String,
    /// Per-header mode, `NAME=keep|drop|redact` (repeatable).
    #[arg(long = "access-log-header")]
    pub access_log_header: Vec<String>,
    /// OTLP collector for traces (e.g. `http://jaeger-collector:4317` for gRPC, `:4318` for
    /// HTTP), overriding `spec.tracing.endpoint`.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// The embedding model folder (model.safetensors, tokenizer.json, config.json), needed when
    /// a gateway enables `semanticCache`; `models/fetch.sh` fills it.
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// The WordNet database folder (Princeton WordNet 3.0 files), needed with the embedding
    /// model: the cache's verification checks that differing words are synonyms;
    /// `models/fetch-wordnet.sh` fills it.
    #[arg(long, default_value = "models/wordnet")]
    pub wordnet_dir: PathBuf,
    /// Embedding worker threads.
    #[arg(long, default_value_t = 1)]
    pub embed_workers: usize,
    /// Peers whose `X-Forwarded-For` is trusted for the client IP (CIDR; repeatable).
    #[arg(long = "trusted-proxy")]
    pub trusted_proxies: Vec<String>,
    /// At SIGTERM, time open requests and streams get to finish before they are cut (an error
    /// event or a 503, with their records); keep it below the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Open connections on the public listener at most; past it new ones are closed at once
    /// (counted in airgate_connections_refused_total).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Request bodies buffered at once, process-wide (e.g. `256MiB`); past it requests get 503
    /// with retry-after before more of their body is read.
    #[arg(long, default_value = "256MiB")]
    pub body_memory_budget: String,
    /// Serve the public listener over TLS with this certificate chain (PEM, leaf first); reloaded
    /// when the file changes. Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates (mTLS) chaining to these CAs (PEM); the certificate's subject
    /// is the user for per-user limits and audit when no JWT names one. Needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// CA certificates (PEM bundle; repeatable) trusted for every backend and API service, on
    /// top of the public roots or a backend's `tls.caSecretName`.
    #[arg(long = "backend-ca")]
    pub backend_ca: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AuditFormatArg {
    Json,
    Ocsf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RedisPolicyArg {
    FailOpen,
    FailClosed,
}

/// At shutdown, how long the cluster tasks get to release the leader lease.
const CLUSTER_STOP: std::time::Duration = std::time::Duration::from_secs(3);

/// Most prompts embedded in one batch.
const EMBED_BATCH: usize = 16;

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => serve(*args).await.map(|()| 0),
        Command::Validate {
            paths,
            secrets_dir,
            policy,
            format,
        } => Ok(validate(
            &paths,
            secrets_dir.as_deref(),
            policy.as_deref(),
            Format::parse(&format).unwrap_or(Format::Text),
        )),
        Command::Audit(AuditCommand::Verify { files }) => Ok(verify_audit(&files)),
        Command::Bundle(BundleCommand::Verify {
            key,
            signature,
            bundle,
        }) => Ok(verify_bundle(&key, &signature, &bundle)),
        Command::Diff { old, new, format } => Ok(diff(
            &old,
            &new,
            Format::parse(&format).unwrap_or(Format::Text),
        )),
        Command::Crds { group } => {
            print!("{}", config::crds::render_group(&group)?);
            Ok(0)
        }
    }
}

/// `airgate diff`: 0 with no breaking change, 1 with some, 2 when an input does not load or
/// NEW's OpenAPI spec cannot be read where OLD's could.
fn diff(old: &Path, new: &Path, format: Format) -> i32 {
    let (before, after) = match (app::load(old), app::load(new)) {
        (Ok(before), Ok(after)) => (before, after),
        (before, after) => {
            for issue in [before.err(), after.err()].into_iter().flatten().flatten() {
                println!("error: {issue}");
            }
            return 2;
        }
    };
    let mut report = crate::policy::diff::compare(&before, &after);
    if !report.errors.is_empty() {
        for warning in &report.warnings {
            println!("warning: {warning}");
        }
        for error in &report.errors {
            println!("error: {error}");
        }
        return 2;
    }
    let mut documents = crate::policy::documents::Documents::default();
    documents.read(old);
    documents.read(new);
    crate::policy::diff::place(&mut report, &documents);
    if format == Format::Sarif {
        let findings = crate::policy::diff::findings(&report, &documents);
        print!("{}", crate::policy::sarif::render(&findings));
    } else if format == Format::Json {
        let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
        let json = serde_json::json!({ "breaking": report.breaking, "warnings": warnings });
        println!("{json}");
    } else {
        for warning in &report.warnings {
            println!("warning: {warning}");
        }
        if report.breaking.is_empty() {
            println!(
                "ok: no breaking change from {} to {}",
                old.display(),
                new.display()
            );
        }
        for change in &report.breaking {
            println!("breaking: {change}");
        }
    }
    i32::from(!report.breaking.is_empty())
}

fn verify_bundle(key: &Path, signature: &Path, bundle: &Path) -> i32 {
    match BundleKey::load(key).and_then(|key| {
        key.check(bundle, signature)?;
        Ok(key)
    }) {
        Ok(key) => {
            println!(
                "ok: {} verifies (key sha256 {})",
                bundle.display(),
                key.fingerprint()
            );
            0
        }
        Err(error) => {
            println!("error: {error}");
            1
        }
    }
}

/// `--config-public-key` and `--config-signature`, read.
fn signing(args: &ServeArgs) -> anyhow::Result<Option<Signing>> {
    let Some(key) = &args.config_public_key else {
        return Ok(None);
    };
    Ok(Some(Signing {
        key: BundleKey::load(key)?,
        signature: args.config_signature.clone().unwrap_or_else(|| {
            signature::default_signature_path(args.config.as_deref().unwrap_or(Path::new("")))
        }),
    }))
}

fn verify_audit(files: &[PathBuf]) -> i32 {
    match audit::verify_files(files) {
        Ok(report) => {
            println!("ok: {} records, chain intact", report.records);
            0
        }
        Err(error) => {
            println!("broken: {error}");
            1
        }
    }
}

/// The OTLP exporter: from the first gateway with `tracing` enabled; the endpoint from
/// `--otlp-endpoint` or `spec.tracing.endpoint`. No endpoint: no exporter, no cost.
fn tracing_settings(loaded: &LoadedConfig, args: &ServeArgs) -> Option<TracingSettings> {
    let spec = loaded
        .gateways
        .iter()
        .filter_map(|g| g.resource.spec.tracing.as_ref())
        .find(|t| t.enabled)?;
    let endpoint = args
        .otlp_endpoint
        .clone()
        .or_else(|| spec.endpoint.clone())?;
    let protocol = match OtlpProtocol::resolve(spec.protocol.as_deref(), &endpoint) {
        Ok(protocol) => protocol,
        Err(e) => {
            eprintln!("airgate: tracing disabled: {e}");
            return None;
        }
    };
    Some(TracingSettings::new(endpoint, protocol, spec.sample_rate))
}

/// Cluster mode: traces go to `--otlp-endpoint` when it is given (resources are not known at
/// start, so `spec.tracing` cannot choose the exporter), every request sampled.
fn cluster_tracing_settings(args: &ServeArgs) -> Option<TracingSettings> {
    let endpoint = args.otlp_endpoint.clone()?;
    match OtlpProtocol::resolve(None, &endpoint) {
        Ok(protocol) => Some(TracingSettings::new(endpoint, protocol, 1.0)),
        Err(e) => {
            eprintln!("airgate: tracing disabled: {e}");
            None
        }
    }
}

/// The access log's header rules from the command line.
fn header_rules(args: &ServeArgs) -> anyhow::Result<HeaderRules> {
    let mode = |value: &str| {
        HeaderMode::parse(value)
            .ok_or_else(|| anyhow::anyhow!("header mode {value:?}: expected keep, drop or redact"))
    };
    let mut rules = HeaderRules {
        default: mode(&args.access_log_headers)?,
        ..HeaderRules::default()
    };
    for item in &args.access_log_header {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--access-log-header {item:?}: expected NAME=MODE"))?;
        rules.names.insert(name.to_ascii_lowercase(), mode(value)?);
    }
    Ok(rules)
}

/// Builds the audit configuration from the command line.
fn audit_config(args: &ServeArgs) -> anyhow::Result<AuditConfig> {
    let mut config = AuditConfig::new(AuditTarget::parse(&args.audit_log));
    config.format = match args.audit_format {
        AuditFormatArg::Json => AuditFormat::Json,
        AuditFormatArg::Ocsf => AuditFormat::Ocsf,
    };
    config.rotate_bytes = match &args.audit_rotate_size {
        Some(size) => Some(
            size.parse::<config::ByteSize>()
                .map_err(|e| anyhow::anyhow!("--audit-rotate-size: {e}"))?
                .0,
        ),
        None => None,
    };
    config.keep_files = args.audit_keep_files;
    if let AuditTarget::Syslog { tls, .. } = &config.target {
        let mut syslog = SyslogConfig::default();
        if *tls {
            let ca_file = args
                .audit_syslog_ca
                .clone()
                .ok_or_else(|| anyhow::anyhow!("syslog+tls needs --audit-syslog-ca"))?;
            syslog.tls = Some(TlsConfig {
                ca_file,
                server_name: args.audit_syslog_server_name.clone().unwrap_or_default(),
            });
        }
        config.syslog = Some(syslog);
    }
    Ok(config)
}

/// Loads every path, runs the rule packs and the `--policy` rules over what loaded, prints the
/// findings in `format`; returns 1 on any error finding, else 0.
pub fn validate(
    paths: &[PathBuf],
    secrets_dir: Option<&Path>,
    policy: Option<&Path>,
    format: Format,
) -> i32 {
    let inputs = paths
        .iter()
        .map(|path| gate::Input {
            path: path.clone(),
            loaded: load_for_validate(path, secrets_dir),
        })
        .collect();
    let report = gate::check(inputs, policy);
    print!("{}", report.render(format));
    report.exit_code()
}

/// What `serve` would load from `path`, with its patterns compiled and, with `secrets_dir`,
/// every secret it names read.
fn load_for_validate(
    path: &Path,
    secrets_dir: Option<&Path>,
) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    let loaded = app::load(path)
        .and_then(app::patterns_compile)
        .and_then(app::specs_compile)?;
    let Some(dir) = secrets_dir else {
        return Ok(loaded);
    };
    let issues = check_secrets(&loaded, dir, &BackendTrust::default());
    if issues.is_empty() {
        Ok(loaded)
    } else {
        Err(issues)
    }
}

/// Where `serve` reads its configuration.
enum Source {
    /// `--config`: a file or folder, reloaded when it changes.
    Path(PathBuf, Option<Signing>),
    /// `--kubernetes`: the cluster's resources.
    Cluster(kube::Client, ClusterSettings),
}

impl Source {
    /// The name records and errors give it.
    fn name(&self) -> PathBuf {
        match self {
            Source::Path(path, _) => path.clone(),
            Source::Cluster(..) => PathBuf::from("kubernetes"),
        }
    }
}

/// The source the flags name; in cluster mode, connected, with its secrets folder claimed.
async fn source(args: &ServeArgs) -> anyhow::Result<Source> {
    let Some(path) = args.config.clone().filter(|_| !args.kubernetes) else {
        if let Some(pinned) = &args.default_gateway {
            let plain = pinned.split_once('/').is_some_and(|(ns, name)| {
                cluster::objects::is_plain_name(ns) && cluster::objects::is_plain_name(name)
            });
            if !plain {
                anyhow::bail!("--default-gateway {pinned:?}: expected NAMESPACE/NAME");
            }
        }
        let (client, context_namespace) = cluster::connect().await?;
        cluster::claim_secrets_dir(&args.secrets_dir)?;
        let settings = ClusterSettings {
            namespaces: args.watch_namespaces.clone(),
            rediscovery: args.kubernetes_discovery_interval,
            default_gateway: args.default_gateway.clone(),
            lease: LeaseSettings {
                namespace: cluster::lease_namespace(
                    args.leader_election_namespace.as_deref(),
                    &context_namespace,
                ),
                name: args.leader_election_lease.clone(),
                identity: cluster::identity(),
                duration: args.leader_lease_duration,
            },
        };
        return Ok(Source::Cluster(client, settings));
    };
    Ok(Source::Path(path, signing(args)?))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let source = source(&args).await?;
    let source_name = source.name();
    let path = source_name.as_path();
    let loaded = match &source {
        Source::Path(path, signing) => {
            app::load_checked(path, signing.as_ref()).map_err(|refused| refused.into_issues(path))
        }
        // nothing is known before the first list: the gateway starts empty, not ready
        Source::Cluster(..) => Ok(LoadedConfig::default()),
    };
    let tracing_settings = match &source {
        Source::Path(..) => loaded
            .as_ref()
            .ok()
            .and_then(|l| tracing_settings(l, &args)),
        Source::Cluster(..) => cluster_tracing_settings(&args),
    };
    let tracing_guard =
        otel::init(tracing_settings).map_err(|e| anyhow::anyhow!("tracing: {e}"))?;
    let loaded = loaded.map_err(|errors| invalid_configuration(&errors, path))?;
    for warning in &loaded.warnings {
        tracing::warn!(warning = %warning, "configuration warning");
    }
    if tracing_guard.is_exporting() {
        tracing::info!("exporting traces over OTLP");
    } else if loaded
        .gateways
        .iter()
        .any(|g| g.resource.spec.tracing.as_ref().is_some_and(|t| t.enabled))
    {
        tracing::warn!("tracing is enabled but no collector is configured (spec.tracing.endpoint or --otlp-endpoint): no spans are exported");
    }
    let trusted_proxies = args
        .trusted_proxies
        .iter()
        .map(|cidr| {
            cidr.parse::<IpNet>()
                .map_err(|e| anyhow::anyhow!("--trusted-proxy {cidr}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::try_new()?);
    let models = match &source {
        Source::Path(..) => Models::load_for(
            &loaded,
            &args.model_dir,
            &args.wordnet_dir,
            args.embed_workers,
            EMBED_BATCH,
        )?,
        Source::Cluster(..) => Models::load_if_present(
            &args.model_dir,
            &args.wordnet_dir,
            args.embed_workers,
            EMBED_BATCH,
        )?,
    };
    let cluster_synced = matches!(source, Source::Cluster(..)).then(Arc::<AtomicBool>::default);
    let backend_trust = BackendTrust::load(&args.backend_ca).context("--backend-ca")?;
    let tls = server_tls(&args, &shutdown)?;
    let limiter = match &args.redis_url {
        None => RateLimiter::memory(),
        Some(url) => {
            let policy = match args.redis_failure_policy {
                RedisPolicyArg::FailOpen => FailurePolicy::FailOpen,
                RedisPolicyArg::FailClosed => FailurePolicy::FailClosed,
            };
            RateLimiter::redis_with(url, metrics.redis_options(policy)).await?
        }
    };
    let audit_config = audit_config(&args)?;
    let audit = AuditLog::start_with(audit_config.clone())
        .with_context(|| format!("opening the audit log {:?}", audit_config.target))?;
    let access_log = AccessLog::start(&AccessTarget::parse(&args.access_log), header_rules(&args)?)
        .with_context(|| format!("opening the access log {}", args.access_log))?;
    let body_budget = args
        .body_memory_budget
        .parse::<config::ByteSize>()
        .map_err(|e| anyhow::anyhow!("--body-memory-budget: {e}"))?
        .0;
    let public_shutdown = Shutdown::default();
    let public_limits = ServerLimits {
        shutdown_grace: args.shutdown_grace,
        max_connections: args.max_connections.max(1),
        ..ServerLimits::default()
    };
    let to_warm = models.embedder.clone();
    let (reload_models, reload_trust) = (models.clone(), backend_trust.clone());
    let process = Process {
        metrics: Arc::clone(&metrics),
        shutdown: shutdown.clone(),
        secrets_dir: args.secrets_dir.clone(),
        backend_trust,
        models,
        limiter,
        trusted_proxies,
        audit: audit.clone(),
        access_log,
        public_shutdown: public_shutdown.clone(),
        listener_stats: Arc::clone(&public_limits.stats),
        body_budget: BodyBudget::new(body_budget),
        cluster_synced: cluster_synced.clone(),
    };
    let built =
        app::build(&loaded, process).map_err(|errors| invalid_configuration(&errors, path))?;
    let state = built.state;
    if state.snapshot.load().default.is_none() && state.snapshot.load().len() > 1 {
        tracing::warn!("several AIGateways and none annotated airgate.io/default: \"true\"; /v1 is not served, use /gateways/{{namespace}}/{{name}}/v1");
    }
    audit.record(
        AuditEvent::new(
            "config_loaded",
            "",
            "",
            "success",
            path.display().to_string(),
        )
        .detail("gateways", loaded.gateways.len())
        .detail("apis", loaded.apis.len())
        .detail("warnings", loaded.warnings.len()),
    );
    let cluster_task = match source {
        Source::Path(path, signing) => {
            let reloader = Reloader::new(ReloadParts {
                path,
                secrets_dir: args.secrets_dir.clone(),
                backend_trust: reload_trust,
                models: reload_models,
                state: Arc::clone(&state),
                shutdown: shutdown.clone(),
                probes: built.probes,
                loaded,
                signing,
                rollback: RollbackPolicy {
                    window: args.rollback_window,
                    min_requests: args.rollback_min_requests,
                    error_ratio: args.rollback_error_ratio.max(0.0),
                },
            });
            app::reload::spawn_watch(reloader, shutdown.clone());
            None
        }
        Source::Cluster(client, settings) => Some(cluster::start(
            client,
            settings,
            StartParts {
                state: Arc::clone(&state),
                secrets_dir: args.secrets_dir.clone(),
                backend_trust: reload_trust,
                models: reload_models,
                probes: built.probes,
                synced: cluster_synced.unwrap_or_default(),
            },
            shutdown.clone(),
        )),
    };
    if let Some(embedder) = to_warm {
        spawn_warm_up(&state, embedder);
    }
    let (listen, admin_listen) = (args.listen, args.admin_listen);
    let public = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let admin = TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("binding {admin_listen}"))?;
    tracing::info!(listen = %public.local_addr()?, admin = %admin.local_addr()?, gateways = state.snapshot.load().len(), tls = tls.is_some(), mtls = args.tls_client_ca.is_some(), "airgate serving");
    let admin_limits = ServerLimits {
        shutdown_grace: args.shutdown_grace,
        ..ServerLimits::default()
    };
    let admin_shutdown = Shutdown::default();
    let public_task = tokio::spawn(server::serve_with_tls(
        public,
        server::public_router(Arc::clone(&state)),
        public_limits,
        tls,
        public_shutdown.clone(),
    ));
    // The admin listener stays plain HTTP: it binds separately, normally to a pod-local port
    // that only the kubelet's probes and Prometheus reach (see docs/tls.md).
    let admin_task = tokio::spawn(server::serve(
        admin,
        server::admin_router(Arc::clone(&state)),
        admin_limits,
        admin_shutdown.clone(),
    ));
    wait_for_signal().await;
    stop(&state, public_task, args.shutdown_grace).await;
    shutdown.cancel();
    if let Some(task) = cluster_task {
        // the leader releases its lease, so that a follower takes over at once
        let _ = tokio::time::timeout(CLUSTER_STOP, task).await;
    }
    admin_shutdown.drain();
    let _ = admin_task.await;
    let _ = tracing_guard.shutdown_async().await;
    Ok(())
}

/// Logs every problem of a configuration `serve` refuses (one line each, as `validate` prints
/// them) and says how many there were.
fn invalid_configuration(errors: &[config::ConfigIssue], path: &Path) -> anyhow::Error {
    for error in errors {
        tracing::error!(problem = %error, "invalid configuration");
    }
    anyhow::anyhow!(
        "{} configuration error(s) in {}",
        errors.len(),
        path.display()
    )
}

/// Warms the embedding model off the request path; `/readyz` answers 503 until it is done, so
/// no request pays for the first forward passes (see [`Embedder::warm_up`]). A failed warm-up
/// is logged and readiness goes on: the cache then treats each failed embedding as a miss.
fn spawn_warm_up(state: &Arc<AppState>, embedder: Arc<Embedder>) {
    state
        .warming_up
        .store(true, std::sync::atomic::Ordering::Release);
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let result = embedder.warm_up().await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => tracing::info!(seconds, "embedding model warmed up"),
            Err(error) => tracing::warn!(seconds, error = %error, "embedding model warm-up failed"),
        }
        state.metrics.cache_warmed_up(seconds);
        state
            .warming_up
            .store(false, std::sync::atomic::Ordering::Release);
    });
}

/// The shutdown sequence (see [`crate::server::shutdown`]): drain the public listener (the
/// admin listener goes on answering, `/readyz` with 503), cut what outlives the grace, then
/// flush the access log and the audit log, whose last record says how the gateway stopped.
async fn stop(
    state: &AppState,
    public_task: tokio::task::JoinHandle<std::io::Result<()>>,
    grace: std::time::Duration,
) {
    tracing::info!(grace = ?grace, "shutting down: draining open requests and streams");
    state.shutdown.drain();
    let _ = public_task.await;
    let cut = state.shutdown.is_cut();
    state.audit.record(
        AuditEvent::new(
            "gateway_stopped",
            "",
            "",
            "success",
            if cut {
                "shutdown grace over: open requests and streams were cut"
            } else {
                "drained"
            },
        )
        .detail("cut_by_shutdown", cut),
    );
    let access = state.access_log.flush(WRITER_FLUSH).await;
    let audit = state.audit.flush(WRITER_FLUSH).await;
    if !(access && audit) {
        tracing::error!(
            access_log_flushed = access,
            audit_log_flushed = audit,
            "a log writer did not confirm its flush before exit; its last records may be lost"
        );
    }
    tracing::info!("stopped");
}

/// The public listener's TLS from `--tls-cert`, `--tls-key` and `--tls-client-ca` (clap makes
/// sure the first two come together); the files are polled for rotation until `shutdown`.
fn server_tls(args: &ServeArgs, shutdown: &CancellationToken) -> anyhow::Result<Option<ServerTls>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let mut settings = ServerTlsSettings::new(cert.clone(), key.clone());
    settings.client_ca_file.clone_from(&args.tls_client_ca);
    let tls = ServerTls::start(&settings, shutdown).context("public listener TLS")?;
    Ok(Some(tls))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
