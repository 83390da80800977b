//! Where each `API`'s OpenAPI spec comes from, once per compiled configuration (start, reload,
//! cluster change), and what `airgate validate` says about it.
//!
//! - `path` first: absolute, or relative to the configuration file naming it. A relative path
//!   belongs beside the configuration (in its repository): missing or unreadable, it is an
//!   error. An absolute path is a file mounted where `serve` runs: missing there, the spec is
//!   *unavailable* and `url` is tried.
//! - `url`, when there is no `path` or it could not be read: fetched once per compile, every
//!   URL of the configuration at once, within [`source::FETCH_TIMEOUT`] in all. A fetched spec
//!   that compiles becomes the URL's last known good; a failed fetch, or a fetched spec that
//!   does not compile, falls back to it (with a warning).
//! - A spec that is read and does not parse or compile is an error (the configuration is
//!   refused). A spec that cannot be obtained is not: the `API` serves with the spec
//!   *unavailable* (`enforce`: 503 to every request; `report`: requests pass unchecked), and a
//!   warning says so.
//! - `validation: off`: nothing is read.
//! - In cluster mode a configuration has no folder, so a relative `path` is an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compile::CompileContext;
use crate::apis::openapi::{Mode, OpenApiPolicy, SpecState};
use crate::config::{Api, ConfigIssue, LoadedConfig, Located, OpenApiValidation};
use crate::openapi::{self, source, CompiledSpec, Spec};
use crate::redact;
use crate::routing::UpstreamClients;

const PATH_FIELD: &str = "spec.openApiSpec.path";
const URL_FIELD: &str = "spec.openApiSpec.url";

/// A spec problem that refuses the configuration, at its field.
#[derive(Debug)]
pub(super) struct SpecProblem {
    pub field: &'static str,
    pub message: String,
}

/// What one `API`'s spec comes to before any fetch.
enum Plan {
    /// No spec, or `validation: off`.
    None,
    Ready(Mode, Arc<CompiledSpec>),
    Fetch {
        mode: Mode,
        url: String,
        /// Why `path` did not give it, when there is one.
        path_reason: Option<String>,
    },
    Unavailable(Mode, String),
    Invalid(SpecProblem),
}

/// The policy of each of `apis` (in order): `Ok(None)` without a spec or with `validation:
/// off`, or the problem that refuses the resource.
pub(super) fn policies(
    apis: &[&Located<Api>],
    ctx: &CompileContext<'_>,
) -> Vec<Result<Option<OpenApiPolicy>, SpecProblem>> {
    let plans: Vec<Plan> = apis
        .iter()
        .map(|located| plan(located, ctx.secrets_by_namespace))
        .collect();
    let urls: Vec<String> = plans
        .iter()
        .filter_map(|plan| match plan {
            Plan::Fetch { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect();
    let fetched = if urls.is_empty() {
        source::Fetched::new()
    } else {
        match UpstreamClients::new(ctx.backend_trust, ctx.secrets_dir).default_client() {
            Ok(client) => source::fetch_all(client.inner(), &urls, source::FETCH_TIMEOUT),
            Err(error) => urls
                .into_iter()
                .map(|url| (url, Err(format!("no client to fetch with: {error}"))))
                .collect(),
        }
    };
    plans
        .into_iter()
        .zip(apis)
        .map(|(plan, located)| {
            let id = located.resource.id();
            let state = match plan {
                Plan::None => return Ok(None),
                Plan::Invalid(problem) => return Err(problem),
                Plan::Ready(mode, spec) => (mode, SpecState::Ready(spec)),
                Plan::Unavailable(mode, reason) => (mode, unavailable(&id, mode, reason)),
                Plan::Fetch {
                    mode,
                    url,
                    path_reason,
                } => (mode, from_url(&id, mode, &url, path_reason, &fetched)),
            };
            let (mode, spec) = state;
            Ok(Some(OpenApiPolicy { mode, spec }))
        })
        .collect()
}

fn plan(located: &Located<Api>, cluster: bool) -> Plan {
    let Some(spec_ref) = &located.resource.spec.open_api_spec else {
        return Plan::None;
    };
    let mode = match spec_ref.validation() {
        OpenApiValidation::Off => return Plan::None,
        OpenApiValidation::Enforce => Mode::Enforce,
        OpenApiValidation::Report => Mode::Report,
    };
    let mut path_reason = None;
    if let Some(path) = &spec_ref.path {
        match from_path(path, &located.source.file, cluster) {
            FromPath::Read(spec, at) => {
                return match CompiledSpec::compile(&spec) {
                    Ok(compiled) => Plan::Ready(mode, Arc::new(compiled)),
                    Err(error) => Plan::Invalid(SpecProblem {
                        field: PATH_FIELD,
                        message: format!("{}: {error}", at.display()),
                    }),
                }
            }
            FromPath::NotHere(reason) => path_reason = Some(reason),
            FromPath::Invalid(message) => {
                return Plan::Invalid(SpecProblem {
                    field: PATH_FIELD,
                    message,
                })
            }
        }
    }
    match &spec_ref.url {
        Some(url) => Plan::Fetch {
            mode,
            url: url.clone(),
            path_reason,
        },
        None => Plan::Unavailable(mode, path_reason.unwrap_or_default()),
    }
}

/// What reading `path` gave.
enum FromPath {
    Read(Spec, PathBuf),
    /// An absolute path that cannot be read here: not an error, the spec is unavailable.
    NotHere(String),
    /// Unreadable relative path, or a file that is not an OpenAPI 3.0/3.1 document.
    Invalid(String),
}

fn from_path(path: &str, config_file: &Path, cluster: bool) -> FromPath {
    let relative = !Path::new(path).is_absolute();
    if relative && cluster {
        return FromPath::Invalid(format!(
            "{path:?} is relative, and in cluster mode there is no configuration folder to \
             read it from: mount the spec and give its absolute path, or give a url"
        ));
    }
    let at = openapi::resolve_path(path, config_file);
    match openapi::read_text(&at) {
        Err(reason) if relative => FromPath::Invalid(format!(
            "{reason} (a relative path is read beside the configuration file that names it)"
        )),
        Err(reason) => FromPath::NotHere(reason),
        Ok(text) => match openapi::document::parse(&text) {
            Ok(spec) => FromPath::Read(spec, at),
            Err(error) => FromPath::Invalid(format!("{}: {error}", at.display())),
        },
    }
}

/// The spec a fetch gave, else the URL's last known good, else unavailable.
fn from_url(
    id: &str,
    mode: Mode,
    url: &str,
    path_reason: Option<String>,
    fetched: &source::Fetched,
) -> SpecState {
    let shown = redact::credentials(url).into_owned();
    let failure = match fetched.get(url) {
        Some(Ok(text)) => {
            match openapi::document::parse(text).and_then(|spec| CompiledSpec::compile(&spec)) {
                Ok(compiled) => {
                    let compiled = Arc::new(compiled);
                    source::remember(url, &compiled);
                    return SpecState::Ready(compiled);
                }
                Err(error) => format!("the spec fetched from {shown} is not valid: {error}"),
            }
        }
        Some(Err(reason)) => reason.clone(),
        None => format!("{shown} was not fetched"),
    };
    if let Some(spec) = source::last_known_good(url) {
        tracing::warn!(api = %id, url = %shown, reason = %failure, "OpenAPI spec: the fetch failed; the last spec fetched from this URL is used");
        return SpecState::Ready(spec);
    }
    let reason = match path_reason {
        Some(path_reason) => format!("{path_reason}; {failure}"),
        None => failure,
    };
    unavailable(id, mode, reason)
}

fn unavailable(id: &str, mode: Mode, reason: String) -> SpecState {
    let consequence = match mode {
        Mode::Enforce => "every request to this API is refused with 503 until it can be read",
        Mode::Report => "requests pass unchecked (validation: report)",
    };
    tracing::warn!(api = %id, reason = %reason, "OpenAPI spec unavailable: {consequence}");
    SpecState::Unavailable(reason)
}

/// For `airgate validate`, which reads files but fetches nothing: the errors (a spec that is
/// read and does not compile; a relative path that cannot be read) and the warnings (an
/// absolute path missing here, with what `serve` will do) of every `API`'s spec.
pub fn spec_issues(config: &LoadedConfig) -> (Vec<ConfigIssue>, Vec<ConfigIssue>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for located in &config.apis {
        let Some(spec_ref) = &located.resource.spec.open_api_spec else {
            continue;
        };
        let mode = spec_ref.validation();
        let Some(path) = spec_ref
            .path
            .as_deref()
            .filter(|_| mode != OpenApiValidation::Off)
        else {
            continue;
        };
        let issue = |message: String| {
            ConfigIssue::at(&located.source, message)
                .with_resource(located.resource.display_name())
                .with_field(PATH_FIELD)
        };
        match from_path(path, &located.source.file, false) {
            FromPath::Read(spec, at) => {
                if let Err(error) = CompiledSpec::compile(&spec) {
                    errors.push(issue(format!("{}: {error}", at.display())));
                }
            }
            FromPath::Invalid(message) => errors.push(issue(message)),
            FromPath::NotHere(reason) => {
                let fallback = if spec_ref.url.is_some() {
                    format!(
                        "`serve` fetches {URL_FIELD} instead (not fetched by validate), and if that fails too, "
                    )
                } else {
                    "until it can be read, ".to_string()
                };
                let consequence = match mode {
                    OpenApiValidation::Report => "requests pass unchecked (validation: report)",
                    _ => "every request gets 503 (validation: enforce)",
                };
                warnings.push(issue(format!(
                    "{reason}: an absolute path must exist where `serve` runs (a mounted spec); {fallback}{consequence}"
                )));
            }
        }
    }
    (errors, warnings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::routing::BackendTrust;

    const SPEC: &str = "openapi: 3.1.0\npaths:\n  /a:\n    get: {}\n";

    fn api(spec_lines: &str) -> String {
        format!(
            "apiVersion: airgate.io/v1alpha1\nkind: API\nmetadata: {{name: a, namespace: n}}\nspec:\n  openApiSpec:\n{spec_lines}  service:\n    name: s\n    port: {{number: 80}}\n    url: http://127.0.0.1:1\n"
        )
    }

    fn policy(
        config_file: &Path,
        yaml: &str,
        cluster: bool,
    ) -> Result<Option<OpenApiPolicy>, SpecProblem> {
        let loaded = crate::config::parse_str(config_file, yaml).unwrap();
        let trust = BackendTrust::default();
        let secrets = std::env::temp_dir().join("airgate-specs-test-no-secrets");
        let ctx = CompileContext {
            secrets_dir: &secrets,
            backend_trust: &trust,
            embedder: None,
            wordnet: None,
            previous: None,
            secrets_by_namespace: cluster,
        };
        let apis: Vec<&Located<Api>> = loaded.apis.iter().collect();
        policies(&apis, &ctx).pop().unwrap()
    }

    /// A URL where nothing listens.
    fn dead_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/spec.yaml", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    #[test]
    fn path_comes_first_and_url_is_not_fetched_when_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spec.yaml"), SPEC).unwrap();
        let config = dir.path().join("api.yaml");
        let yaml = api(&format!("    path: spec.yaml\n    url: {}\n", dead_url()));
        let started = std::time::Instant::now();
        let Ok(Some(OpenApiPolicy {
            mode: Mode::Enforce,
            spec: SpecState::Ready(spec),
        })) = policy(&config, &yaml, false)
        else {
            panic!("the path was not read");
        };
        assert_eq!(spec.paths(), 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn an_absolute_path_missing_here_falls_back_to_the_url_then_is_unavailable() {
        let yaml = api(&format!(
            "    path: /nonexistent/spec.yaml\n    url: {}\n    validation: report\n",
            dead_url()
        ));
        let Ok(Some(OpenApiPolicy {
            mode: Mode::Report,
            spec: SpecState::Unavailable(reason),
        })) = policy(Path::new("/repo/api.yaml"), &yaml, false)
        else {
            panic!("not unavailable");
        };
        assert!(
            reason.contains("/nonexistent/spec.yaml") && reason.contains("fetching"),
            "{reason}"
        );
    }

    #[test]
    fn a_relative_path_must_read_and_has_no_meaning_in_cluster_mode() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("api.yaml");
        let missing = policy(&config, &api("    path: specs/missing.yaml\n"), false).unwrap_err();
        assert_eq!(missing.field, PATH_FIELD);
        assert!(
            missing.message.contains("beside the configuration"),
            "{}",
            missing.message
        );
        std::fs::write(dir.path().join("spec.yaml"), SPEC).unwrap();
        let cluster = policy(&config, &api("    path: spec.yaml\n"), true).unwrap_err();
        assert!(
            cluster.message.contains("cluster mode"),
            "{}",
            cluster.message
        );
        std::fs::write(
            dir.path().join("broken.yaml"),
            "openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody: {$ref: '#/nope'}\n",
        )
        .unwrap();
        let broken = policy(&config, &api("    path: broken.yaml\n"), false).unwrap_err();
        assert!(
            broken.message.contains("does not resolve"),
            "{}",
            broken.message
        );
    }

    #[test]
    fn off_reads_nothing() {
        let yaml = api("    path: specs/missing.yaml\n    validation: off\n");
        assert!(policy(Path::new("/repo/api.yaml"), &yaml, false)
            .unwrap()
            .is_none());
    }
}
