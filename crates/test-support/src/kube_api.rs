//! A stand-in for the Kubernetes API server, for cluster-mode tests: no API server can be
//! installed on the test machines. It speaks the server's real HTTP protocol, so kube-rs's
//! whole client path (discovery, paged list, watch, status patch, Lease get/create/replace)
//! runs over real HTTP:
//!
//! - group discovery `GET /apis/{group}/{version}` (an `APIResourceList`, 404 for a group not
//!   served);
//! - lists with `metadata.resourceVersion`, of one namespace or all, with `type!=` field
//!   selectors on Secrets;
//! - watches (`?watch=true&resourceVersion=N`): a chunked stream of `{"type","object"}` lines,
//!   the history after `N` first, then live events, `BOOKMARK`s when asked for, and `410 Gone`
//!   as an `ERROR` event carrying a `Status` when `N` is older than the last compaction
//!   ([`FakeKube::expire_watches`] compacts and closes every open watch);
//! - `PATCH .../{name}/status` (JSON merge patch of `status` only; recorded);
//! - Leases: `GET`, `POST` (409 when it exists), `PUT` (409 on a stale `resourceVersion`);
//!   writes recorded.
//!
//! It does not do authentication, admission, server-side apply, or label selectors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// A collection: `(group, version, plural)`; the core group is `""`.
pub type Collection = (String, String, String);

/// One recorded write: method, path and body.
#[derive(Debug, Clone)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// The bearer token the client sent: which replica wrote.
    pub token: String,
}

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    collection: Collection,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<(Collection, String, String), Value>,
    history: Vec<Change>,
    /// Watches from before this resourceVersion get 410 Gone.
    compacted: u64,
    writes: Vec<Write>,
    /// `(group/version)` → `[(plural, kind)]`
    served: BTreeMap<String, Vec<(String, String)>>,
    uid: u64,
    /// Lists answered (a watcher's relist is one more).
    lists: usize,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changes: broadcast::Sender<Change>,
    /// Closes every open watch (a reset connection, an API server restart).
    closes: broadcast::Sender<()>,
    /// While true, lists wait (an API server slow to answer the first list).
    holding: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Shared {
    /// A change in the history, and to every open watch.
    fn record(&self, inner: &mut Inner, change: Change) {
        inner.history.push(change.clone());
        let _ = self.changes.send(change);
    }
}

/// The running stand-in; stops when dropped.
pub struct FakeKube {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeKube {
    /// Serves on a free loopback port the core group (Secrets), coordination.k8s.io (Leases)
    /// and `AIGateway`/`API` in each of `groups`.
    pub async fn start(groups: &[&str]) -> std::io::Result<Self> {
        let mut inner = Inner::default();
        for group in groups {
            inner
                .served
                .insert(format!("{group}/v1alpha1"), gateway_kinds());
        }
        inner.served.insert(
            "coordination.k8s.io/v1".into(),
            vec![("leases".into(), "Lease".into())],
        );
        let (changes, _) = broadcast::channel(1024);
        let (closes, _) = broadcast::channel(4);
        let shared = Shared {
            inner: Arc::new(Mutex::new(inner)),
            changes,
            closes,
            holding: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// A kubeconfig pointing at the stand-in over plain `http://`, context namespace
    /// `namespace`.
    pub fn kubeconfig(&self, namespace: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\n    namespace: {namespace}\ncurrent-context: fake\n",
            self.addr
        )
    }

    /// Creates or replaces an object (metadata.generation moves when `spec` changes), as
    /// `kubectl apply` does. `object` carries apiVersion, kind, metadata (name, namespace) and
    /// the rest.
    pub fn apply(&self, plural: &str, mut object: Value) {
        let collection = collection_of(&object, plural);
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut inner = lock(&self.shared.inner);
        inner.rv += 1;
        let rv = inner.rv;
        let key = (collection.clone(), namespace.clone(), name);
        let before = inner.objects.get(&key).cloned();
        let kind = if before.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let generation = match &before {
            Some(old) if old.get("spec") == object.get("spec") => {
                old["metadata"]["generation"].as_i64().unwrap_or(1)
            }
            Some(old) => old["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
            None => 1,
        };
        inner.uid += 1;
        let uid = inner.uid;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        meta["generation"] = json!(generation);
        meta["namespace"] = json!(namespace);
        meta["uid"] = before.as_ref().map_or_else(
            || json!(format!("uid-{uid}")),
            |o| o["metadata"]["uid"].clone(),
        );
        meta["creationTimestamp"] = before.as_ref().map_or_else(
            || json!(format!("2026-01-01T00:00:{:02}Z", uid % 60)),
            |o| o["metadata"]["creationTimestamp"].clone(),
        );
        if let Some(status) = before.as_ref().and_then(|o| o.get("status")) {
            object["status"] = status.clone();
        }
        inner.objects.insert(key, object.clone());
        self.shared.record(
            &mut inner,
            Change {
                rv,
                collection,
                namespace,
                kind,
                object,
            },
        );
    }

    /// Deletes an object.
    pub fn delete(&self, group_version: &str, plural: &str, namespace: &str, name: &str) {
        let collection = split_collection(group_version, plural);
        let mut inner = lock(&self.shared.inner);
        let key = (collection.clone(), namespace.to_string(), name.to_string());
        if let Some(mut object) = inner.objects.remove(&key) {
            inner.rv += 1;
            let rv = inner.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            let change = Change {
                rv,
                collection,
                namespace: namespace.to_string(),
                kind: "DELETED",
                object,
            };
            self.shared.record(&mut inner, change);
        }
    }

    /// Compacts the history (every resourceVersion so far becomes too old: a watch resuming
    /// from one gets `410 Gone`) and closes every open watch, as an API server restart does.
    pub fn expire_watches(&self) {
        {
            let mut inner = lock(&self.shared.inner);
            inner.rv += 1;
            inner.compacted = inner.rv;
            inner.history.clear();
        }
        let _ = self.shared.closes.send(());
    }

    /// Starts serving `AIGateway` and `API` of `group` (its CRDs installed now).
    pub fn serve_group(&self, group: &str) {
        lock(&self.shared.inner)
            .served
            .insert(format!("{group}/v1alpha1"), gateway_kinds());
    }

    /// Lists wait until [`FakeKube::release_lists`].
    pub fn hold_lists(&self) {
        self.shared.holding.send_replace(true);
    }

    pub fn release_lists(&self) {
        self.shared.holding.send_replace(false);
    }

    /// Lists answered so far.
    pub fn lists(&self) -> usize {
        lock(&self.shared.inner).lists
    }

    /// One object as stored.
    pub fn get(
        &self,
        group_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let key = (
            split_collection(group_version, plural),
            namespace.to_string(),
            name.to_string(),
        );
        lock(&self.shared.inner).objects.get(&key).cloned()
    }

    /// Every write a client made (status patches, Lease writes), in order.
    pub fn writes(&self) -> Vec<Write> {
        lock(&self.shared.inner).writes.clone()
    }
}

/// `AIGateway` and `API` as discovery lists them: `(plural, kind)`.
fn gateway_kinds() -> Vec<(String, String)> {
    vec![
        ("aigateways".into(), "AIGateway".into()),
        ("apis".into(), "API".into()),
    ]
}

fn split_collection(group_version: &str, plural: &str) -> Collection {
    match group_version.split_once('/') {
        Some((group, version)) => (group.into(), version.into(), plural.into()),
        None => (String::new(), group_version.into(), plural.into()),
    }
}

fn collection_of(object: &Value, plural: &str) -> Collection {
    split_collection(object["apiVersion"].as_str().unwrap_or("v1"), plural)
}

/// A request's target, parsed from its path.
struct Target {
    collection: Collection,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

/// `/api/v1/...` or `/apis/{group}/{version}/...`: `[namespaces/{ns}/]{plural}[/{name}[/status]]`.
fn parse_target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] => (*plural, Some(name.to_string()), true),
        _ => return None,
    };
    Some(Target {
        collection: (group.into(), version.into(), plural.into()),
        namespace,
        name,
        status,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn not_found() -> Response {
    let message = "the server could not find the requested resource";
    answer(404, status(404, "NotFound", message))
}

fn answer(code: u16, body: Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `type!=A,type!=B` on Secrets; other selectors are not supported (everything matches).
fn selected(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once("!=") {
        Some(("type", value)) => object["type"].as_str() != Some(value),
        _ => true,
    })
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let path = uri.path().to_string();
    let params = query(&uri);
    // group discovery
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method == Method::GET {
        if let ["apis", group, version] = parts.as_slice() {
            return discovery(&shared, group, version);
        }
    }
    let Some(target) = parse_target(&path) else {
        return not_found();
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.clone(), target.name.is_some(), target.status) {
        (Method::GET, false, _) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&shared, &target, &params)
        }
        (Method::GET, false, _) => {
            let mut holding = shared.holding.subscribe();
            let _ = holding.wait_for(|held| !*held).await;
            list(&shared, &target, &params)
        }
        (Method::GET, true, false) => get(&shared, &target),
        (Method::PATCH, true, true) => patch_status(&shared, &target, &path, &token, body),
        (Method::POST, false, _) => create(&shared, &target, &path, &token, body),
        (Method::PUT, true, false) => replace(&shared, &target, &path, &token, body),
        _ => answer(
            405,
            status(405, "MethodNotAllowed", "not supported by the stand-in"),
        ),
    }
}

fn discovery(shared: &Shared, group: &str, version: &str) -> Response {
    let inner = lock(&shared.inner);
    let group_version = format!("{group}/{version}");
    let Some(kinds) = inner.served.get(&group_version) else {
        return not_found();
    };
    let mut resources = Vec::new();
    for (plural, kind) in kinds {
        resources.push(json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": true,
            "kind": kind, "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}));
        resources.push(
            json!({"name": format!("{plural}/status"), "singularName": "", "namespaced": true,
            "kind": kind, "verbs": ["get", "patch", "update"]}),
        );
    }
    answer(
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1",
                       "groupVersion": group_version, "resources": resources}),
    )
}

fn matches(target: &Target, collection: &Collection, namespace: &str) -> bool {
    *collection == target.collection && target.namespace.as_deref().is_none_or(|ns| ns == namespace)
}

fn list(shared: &Shared, target: &Target, params: &BTreeMap<String, String>) -> Response {
    let mut inner = lock(&shared.inner);
    inner.lists += 1;
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((collection, ns, _), object)| {
            matches(target, collection, ns) && selected(object, params.get("fieldSelector"))
        })
        .map(|(_, object)| object.clone())
        .collect();
    answer(
        200,
        json!({"kind": "List", "apiVersion": "v1",
                       "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
    )
}

fn get(shared: &Shared, target: &Target) -> Response {
    let inner = lock(&shared.inner);
    let key = (
        target.collection.clone(),
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    );
    match inner.objects.get(&key) {
        Some(object) => answer(200, object.clone()),
        None => not_found(),
    }
}

fn watch(shared: &Shared, target: &Target, params: &BTreeMap<String, String>) -> Response {
    let from: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let selector = params.get("fieldSelector").cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let (backlog, current, too_old) = {
        let inner = lock(&shared.inner);
        let too_old = from != 0 && from < inner.compacted;
        let backlog: Vec<Change> = inner
            .history
            .iter()
            .filter(|c| c.rv > from && matches(target, &c.collection, &c.namespace))
            .cloned()
            .collect();
        (backlog, inner.rv, too_old)
    };
    let line = |kind: &str, object: &Value| {
        Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
    };
    if too_old {
        let gone = status(
            410,
            "Expired",
            &format!("too old resource version: {from} ({current})"),
        );
        let _ = tx.try_send(Ok(line("ERROR", &gone)));
        drop(tx);
    } else {
        let mut changes = shared.changes.subscribe();
        let mut closes = shared.closes.subscribe();
        let target = Target {
            collection: target.collection.clone(),
            namespace: target.namespace.clone(),
            name: None,
            status: false,
        };
        let kind_of = target.collection.2.clone();
        tokio::spawn(async move {
            let mut last = from;
            for change in backlog {
                if selected(&change.object, selector.as_ref()) {
                    last = change.rv;
                    if tx
                        .send(Ok(line(change.kind, &change.object)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                // a close sent before a change is seen before it: nothing after an expiry is
                // delivered on a watch from before it
                tokio::select! {
                    biased;
                    _ = closes.recv() => return,
                    change = changes.recv() => {
                        let Ok(change) = change else { return };
                        if change.rv > last
                            && matches(&target, &change.collection, &change.namespace)
                            && selected(&change.object, selector.as_ref())
                        {
                            last = change.rv;
                            if tx.send(Ok(line(change.kind, &change.object))).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ = tick.tick(), if bookmarks => {
                        let bookmark = json!({"kind": kind_of, "apiVersion": "v1",
                            "metadata": {"resourceVersion": last.max(current).to_string()}});
                        if tx.send(Ok(line("BOOKMARK", &bookmark))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| answer(500, Value::Null))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn record_write(inner: &mut Inner, method: &str, path: &str, token: &str, body: &Value) {
    inner.writes.push(Write {
        method: method.into(),
        path: path.into(),
        body: body.clone(),
        token: token.into(),
    });
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    if let Some(map) = target.as_object_mut() {
                        map.remove(key);
                    }
                } else {
                    merge(&mut target[key.as_str()], value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn patch_status(
    shared: &Shared,
    target: &Target,
    path: &str,
    token: &str,
    body: Value,
) -> Response {
    let mut inner = lock(&shared.inner);
    record_write(&mut inner, "PATCH", path, token, &body);
    let namespace = target.namespace.clone().unwrap_or_default();
    let key = (
        target.collection.clone(),
        namespace.clone(),
        target.name.clone().unwrap_or_default(),
    );
    let Some(mut object) = inner.objects.get(&key).cloned() else {
        return not_found();
    };
    // the status subresource: only `status` changes
    if let Some(patch) = body.get("status") {
        merge(&mut object["status"], patch);
    }
    inner.rv += 1;
    let rv = inner.rv;
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    inner.objects.insert(key.clone(), object.clone());
    let change = Change {
        rv,
        collection: key.0,
        namespace,
        kind: "MODIFIED",
        object: object.clone(),
    };
    shared.record(&mut inner, change);
    answer(200, object)
}

fn create(shared: &Shared, target: &Target, path: &str, token: &str, mut body: Value) -> Response {
    let mut inner = lock(&shared.inner);
    record_write(&mut inner, "POST", path, token, &body);
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = (target.collection.clone(), namespace.clone(), name);
    if inner.objects.contains_key(&key) {
        return answer(409, status(409, "AlreadyExists", "already exists"));
    }
    inner.rv += 1;
    body["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    body["metadata"]["namespace"] = json!(namespace);
    inner.objects.insert(key, body.clone());
    answer(201, body)
}

fn replace(shared: &Shared, target: &Target, path: &str, token: &str, mut body: Value) -> Response {
    let mut inner = lock(&shared.inner);
    record_write(&mut inner, "PUT", path, token, &body);
    let key = (
        target.collection.clone(),
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    );
    let Some(current) = inner.objects.get(&key) else {
        return not_found();
    };
    if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        return answer(409, status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again"));
    }
    inner.rv += 1;
    body["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    inner.objects.insert(key, body.clone());
    answer(200, body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_the_api_server_lays_them_out() {
        let t =
            parse_target("/apis/airgate.io/v1alpha1/namespaces/ml/aigateways/gw/status").unwrap();
        assert_eq!(t.collection.0, "airgate.io");
        assert_eq!(t.namespace.as_deref(), Some("ml"));
        assert!(t.status);
        let t = parse_target("/api/v1/secrets").unwrap();
        assert_eq!(t.collection, ("".into(), "v1".into(), "secrets".into()));
        assert!(t.namespace.is_none() && t.name.is_none());
        assert_eq!(
            percent_decode("type%21%3Dhelm.sh%2Frelease.v1"),
            "type!=helm.sh/release.v1"
        );
    }
}
