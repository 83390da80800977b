//! Cluster mode (`serve --kubernetes`), on the real binary against the in-process stand-in for
//! the Kubernetes API server (`airgate_test_support::kube_api`), so that kube-rs's whole client
//! path runs over real HTTP: resources present at start, changes while serving, a Secret
//! rotation, an invalid resource beside valid ones, a watch that expires, and two replicas
//! with one leader writing status and a follower taking over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airgate_test_support::kube_api::FakeKube;
use airgate_test_support::mock::{MockConfig, MockServer};
use base64::Engine;
use common::process::GatewayProcess;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

/// Long enough for a loaded CI machine; the gateway's own target is 2 s.
const DEADLINE: Duration = Duration::from_secs(15);
const HUB: &str = "hub.traefik.io/v1alpha1";
const OWN: &str = "airgate.io/v1alpha1";
const LEASE: &str = "coordination.k8s.io/v1";

async fn fake() -> FakeKube {
    FakeKube::start(&["hub.traefik.io", "airgate.io"])
        .await
        .unwrap()
}

async fn backend() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

/// An `AIGateway` `namespace/name` serving `model` from `backend`, `spec` merged in.
fn gateway(
    api_version: &str,
    namespace: &str,
    name: &str,
    model: &str,
    backend: &str,
    spec: Value,
) -> Value {
    let mut object = json!({
        "apiVersion": api_version,
        "kind": "AIGateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backends": [{"name": "a", "url": backend, "models": [model], "timeout": "30s"}]}
    });
    if let Value::Object(extra) = spec {
        for (key, value) in extra {
            object["spec"][key.as_str()] = value;
        }
    }
    object
}

fn default_gateway(model: &str, backend: &str) -> Value {
    let mut object = gateway(HUB, "ml", "gw", model, backend, json!({}));
    object["metadata"]["annotations"] = json!({"airgate.io/default": "true"});
    object
}

/// Starts one replica against `kube`, waiting for readiness.
async fn replica(kube: &FakeKube, name: &str, extra: &[&str]) -> GatewayProcess {
    let gw = GatewayProcess::cluster(
        &kube.kubeconfig("airgate-system", &format!("token-{name}")),
        extra,
        &[("POD_NAME", name)],
    );
    gw.wait_ready().await;
    gw
}

/// The models a gateway lists at `prefix` (`""` for the default), `None` when it has none.
async fn models(gw: &GatewayProcess, prefix: &str) -> Option<Vec<String>> {
    let response = reqwest::get(format!("{}{prefix}/v1/models", gw.url))
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let list: Value = response.json().await.ok()?;
    Some(
        list["data"]
            .as_array()?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .filter(|id| id != "auto")
            .collect(),
    )
}

/// Polls `check` until it holds; how long that took.
async fn eventually<F, Fut>(what: &str, gw: &GatewayProcess, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {DEADLINE:?}\n{}", gw.output());
}

/// The condition `kind` of an object's status.
fn condition(object: &Option<Value>, kind: &str) -> Value {
    object
        .as_ref()
        .and_then(|o| o["status"]["conditions"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .find(|c| c["type"] == kind)
        .unwrap_or(Value::Null)
}

async fn chat(gw: &GatewayProcess, model: &str, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn resources_present_at_start_are_served_once_listed_and_get_status() {
    let kube = fake().await;
    let mock = backend().await;
    kube.apply("aigateways", default_gateway("m1", &mock.url()));
    kube.apply(
        "apis",
        json!({"apiVersion": OWN, "kind": "API", "metadata": {"name": "pay", "namespace": "fin"},
               "spec": {"service": {"name": "pay", "port": {"number": 8080}, "url": mock.url()},
                        "pathPrefix": "/pay"}}),
    );
    // the API server is slow to answer the first list: not ready until it is applied
    kube.hold_lists();
    let gw = GatewayProcess::cluster(&kube.kubeconfig("airgate-system", "t"), &[], &[]);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        if let Ok(response) = reqwest::get(format!("{}/readyz", gw.admin)).await {
            assert_eq!(response.status(), 503, "ready before the first list");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kube.release_lists();
    gw.wait_ready().await;
    assert_eq!(models(&gw, "").await, Some(vec!["m1".to_string()]));
    assert_eq!(chat(&gw, "m1", None).await, 200);

    for (gv, plural, ns, name) in [(HUB, "aigateways", "ml", "gw"), (OWN, "apis", "fin", "pay")] {
        eventually(&format!("status of {name}"), &gw, || async {
            let object = kube.get(gv, plural, ns, name);
            condition(&object, "Accepted")["status"] == "True"
                && condition(&object, "Programmed")["status"] == "True"
        })
        .await;
        let object = kube.get(gv, plural, ns, name).unwrap();
        assert_eq!(object["status"]["observedGeneration"], 1);
        let accepted = condition(&Some(object.clone()), "Accepted");
        assert_eq!(accepted["observedGeneration"], 1);
        assert_eq!(accepted["reason"], "Accepted");
        assert!(accepted["lastTransitionTime"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        // the spec is left alone: the write went through the status subresource
        assert!(object["spec"].is_object());
    }
    let writes = kube.writes();
    assert!(writes
        .iter()
        .filter(|w| w.method == "PATCH")
        .all(|w| w.path.ends_with("/status") && w.body.as_object().unwrap().len() == 1));
    let applied = gw.lines("audit.jsonl");
    assert!(
        applied.iter().any(|e| e["event"] == "config_applied"),
        "{applied:?}"
    );

    // nothing changed: nothing more is written
    let patches = writes.iter().filter(|w| w.method == "PATCH").count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        kube.writes().iter().filter(|w| w.method == "PATCH").count(),
        patches
    );
}

#[tokio::test]
async fn create_update_and_delete_while_serving() {
    let kube = fake().await;
    let mock = backend().await;
    kube.apply("aigateways", default_gateway("m1", &mock.url()));
    let gw = replica(&kube, "solo", &[]).await;

    kube.apply(
        "aigateways",
        gateway(OWN, "team", "other", "m2", &mock.url(), json!({})),
    );
    let took = eventually("a created gateway serves", &gw, || async {
        models(&gw, "/gateways/team/other").await == Some(vec!["m2".into()])
    })
    .await;
    println!("created: served after {took:?}");

    kube.apply(
        "aigateways",
        gateway(OWN, "team", "other", "m3", &mock.url(), json!({})),
    );
    let took = eventually("an updated gateway serves its new model", &gw, || async {
        models(&gw, "/gateways/team/other").await == Some(vec!["m3".into()])
    })
    .await;
    println!("updated: served after {took:?}");
    eventually("observedGeneration follows the update", &gw, || async {
        kube.get(OWN, "aigateways", "team", "other").unwrap()["status"]["observedGeneration"] == 2
    })
    .await;

    kube.delete(OWN, "aigateways", "team", "other");
    let took = eventually("a deleted gateway stops serving", &gw, || async {
        models(&gw, "/gateways/team/other").await.is_none()
    })
    .await;
    println!("deleted: gone after {took:?}");
    assert_eq!(models(&gw, "").await, Some(vec!["m1".to_string()]));
    // another resource's changes leave the default gateway's status alone: written once
    let gw_status = kube
        .writes()
        .into_iter()
        .filter(|w| w.method == "PATCH" && w.path.contains("/aigateways/gw/"))
        .count();
    assert_eq!(gw_status, 1);
}

fn token(secret: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        json!({"sub": "alice", "iss": "https://issuer.test", "aud": "airgate", "exp": now + 600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn jwt_secret(value: &str) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(value);
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "jwt", "namespace": "ml"}, "data": {"secret": data}})
}

#[tokio::test]
async fn a_rotated_secret_accepts_the_new_key_and_refuses_the_old() {
    let kube = fake().await;
    let mock = backend().await;
    let (old, new) = (
        "old-key-old-key-old-key-old-key-0",
        "new-key-new-key-new-key-new-key-1",
    );
    let mut gw_object = default_gateway("m1", &mock.url());
    gw_object["spec"]["authentication"] = json!({"jwt": {"secretName": "jwt", "issuer": "https://issuer.test", "audience": "airgate"}});
    kube.apply("aigateways", gw_object);
    kube.apply("secrets", jwt_secret(old));
    // a Secret no resource names, which must not be written to the secrets folder
    kube.apply(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "unrelated", "namespace": "ml"}, "data": {"password": "eA=="}}),
    );
    let gw = replica(&kube, "solo", &[]).await;
    assert_eq!(chat(&gw, "m1", Some(&token(old))).await, 200);
    assert_eq!(chat(&gw, "m1", None).await, 401);
    let written = gw.dir.path().join("secrets/ml/jwt/secret");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), old);
    assert!(!gw.dir.path().join("secrets/ml/unrelated").exists());

    kube.apply("secrets", jwt_secret(new));
    let took = eventually("the new key is accepted", &gw, || async {
        chat(&gw, "m1", Some(&token(new))).await == 200
    })
    .await;
    println!("rotation: applied after {took:?}");
    assert_eq!(chat(&gw, "m1", Some(&token(old))).await, 401);
    // at shutdown the written keys are removed
    let mut gw = gw;
    gw.terminate();
    gw.wait_exit(Duration::from_secs(20));
    assert!(!gw.dir.path().join("secrets/ml").exists());
}

#[tokio::test]
async fn an_invalid_resource_is_refused_with_its_field_while_the_others_serve() {
    let kube = fake().await;
    let mock = backend().await;
    kube.apply("aigateways", default_gateway("m1", &mock.url()));
    let mut bad = gateway(OWN, "ml", "bad", "m2", &mock.url(), json!({}));
    bad["spec"]["backends"][0]["timeout"] = json!("soon");
    kube.apply("aigateways", bad);
    let gw = replica(&kube, "solo", &[]).await;
    assert_eq!(models(&gw, "").await, Some(vec!["m1".to_string()]));
    assert_eq!(models(&gw, "/gateways/ml/bad").await, None);
    eventually("the invalid resource's condition", &gw, || async {
        condition(&kube.get(OWN, "aigateways", "ml", "bad"), "Accepted")["reason"] == "Invalid"
    })
    .await;
    let bad = kube.get(OWN, "aigateways", "ml", "bad");
    let accepted = condition(&bad, "Accepted");
    assert_eq!(accepted["status"], "False");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.backends[0].timeout: "),
        "{accepted}"
    );
    assert_eq!(condition(&bad, "Programmed")["status"], "False");

    // the serving gateway turns invalid: its last good version serves on
    let mut broken = default_gateway("m9", &mock.url());
    broken["spec"]["backends"][0]["timeout"] = json!("soon");
    kube.apply("aigateways", broken);
    eventually("the broken update is reported", &gw, || async {
        let object = kube.get(HUB, "aigateways", "ml", "gw");
        condition(&object, "Accepted")["status"] == "False"
            && object.as_ref().unwrap()["status"]["observedGeneration"] == 2
    })
    .await;
    let programmed = condition(&kube.get(HUB, "aigateways", "ml", "gw"), "Programmed");
    assert!(
        programmed["message"]
            .as_str()
            .unwrap()
            .contains("last accepted version serves on"),
        "{programmed}"
    );
    assert_eq!(models(&gw, "").await, Some(vec!["m1".to_string()]));
    assert_eq!(chat(&gw, "m1", None).await, 200);
    let rejected: Vec<Value> = gw
        .lines("audit.jsonl")
        .into_iter()
        .filter(|e| e["event"] == "config_rejected")
        .collect();
    assert!(!rejected.is_empty(), "no config_rejected audit record");
    assert!(
        gw.metrics()
            .await
            .contains("airgate_cluster_resources_refused 2"),
        "both refused resources counted"
    );
}

/// The attack: a tenant who may create `API`s in its own namespace claims another team's
/// `pathPrefix`, to receive its callers' requests (and their tokens).
#[tokio::test]
async fn a_later_api_claiming_a_served_path_prefix_is_refused() {
    let kube = fake().await;
    let (owner, attacker) = (backend().await, backend().await);
    let api = |namespace: &str, url: String| {
        json!({"apiVersion": OWN, "kind": "API", "metadata": {"name": "pay", "namespace": namespace},
               "spec": {"service": {"name": "pay", "port": {"number": 80}, "url": url},
                        "pathPrefix": "/payments"}})
    };
    kube.apply("apis", api("finance", owner.url()));
    let gw = replica(&kube, "solo", &[]).await;
    kube.apply("apis", api("tenant", attacker.url()));
    eventually("the claim is refused", &gw, || async {
        condition(&kube.get(OWN, "apis", "tenant", "pay"), "Accepted")["reason"] == "Conflicted"
    })
    .await;
    let accepted = condition(&kube.get(OWN, "apis", "tenant", "pay"), "Accepted");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("spec.pathPrefix: /payments is already served by API finance/pay"),
        "{accepted}"
    );
    let response = reqwest::Client::new()
        .post(format!("{}/payments/v1/chat/completions", gw.url))
        .bearer_auth("a-caller-token")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "pay 10"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!((owner.requests(), attacker.requests()), (1, 0));
}

/// The attack: a tenant annotates its own gateway as the default, to receive every `/v1`
/// caller's prompts. With `--default-gateway` pinning the platform's gateway (which carries
/// no annotation), the tenant's is refused and `/v1` stays with the platform.
#[tokio::test]
async fn a_pinned_default_gateway_cannot_be_taken_over() {
    let kube = fake().await;
    let (platform, attacker) = (backend().await, backend().await);
    kube.apply(
        "aigateways",
        gateway(OWN, "ml", "platform", "m1", &platform.url(), json!({})),
    );
    kube.apply(
        "aigateways",
        gateway(OWN, "ml", "other", "m2", &platform.url(), json!({})),
    );
    let gw = replica(&kube, "solo", &["--default-gateway", "ml/platform"]).await;
    assert_eq!(models(&gw, "").await, Some(vec!["m1".to_string()]));
    let mut hijack = gateway(OWN, "tenant", "grab", "m1", &attacker.url(), json!({}));
    hijack["metadata"]["annotations"] = json!({"airgate.io/default": "true"});
    kube.apply("aigateways", hijack);
    eventually("the hijack is refused", &gw, || async {
        condition(&kube.get(OWN, "aigateways", "tenant", "grab"), "Accepted")["reason"]
            == "Conflicted"
    })
    .await;
    assert_eq!(chat(&gw, "m1", None).await, 200);
    assert_eq!((platform.requests(), attacker.requests()), (1, 0));
}

#[tokio::test]
async fn an_expired_watch_relists_with_no_gap_in_what_is_served() {
    let kube = fake().await;
    let mock = backend().await;
    kube.apply("aigateways", default_gateway("m1", &mock.url()));
    let gw = replica(&kube, "solo", &[]).await;
    let lists_before = kube.lists();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let url = gw.url.clone();
    let answers = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&answers);
    // polls the default gateway throughout: m1 must never be missing
    let poller = tokio::spawn(async move {
        let mut stopped = stopped;
        let mut gaps = 0;
        loop {
            if stopped.try_recv().is_ok() {
                return gaps;
            }
            let body: Value = reqwest::get(format!("{url}/v1/models"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            counted.fetch_add(1, Ordering::Relaxed);
            if !body.to_string().contains("\"m1\"") {
                gaps += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let polled = |n: usize| {
        let answers = Arc::clone(&answers);
        async move {
            while answers.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    polled(3).await;
    let before_expiry = answers.load(Ordering::Relaxed);
    kube.expire_watches();
    // made while every watch is down: only a relist can show it
    kube.apply(
        "aigateways",
        gateway(OWN, "ml", "late", "m5", &mock.url(), json!({})),
    );
    eventually("a change made during the expiry is served", &gw, || async {
        models(&gw, "/gateways/ml/late").await == Some(vec!["m5".into()])
    })
    .await;
    // and a few answers after the relist
    polled(answers.load(Ordering::Relaxed) + 3).await;
    stop.send(()).unwrap();
    let gaps = poller.await.unwrap();
    let answers = answers.load(Ordering::Relaxed);
    assert!(answers >= before_expiry + 3, "{answers}");
    assert_eq!(
        gaps, 0,
        "{gaps} of {answers} answers lacked the served model"
    );
    eventually("a relist after the watch expired", &gw, || async {
        kube.lists() > lists_before
    })
    .await;
    // the resumed watches were told 410 Gone, and re-listed
    let output = gw.output();
    let gone = output
        .lines()
        .filter(|l| l.contains("watch failed") && l.contains("Expired"))
        .count();
    assert!(gone >= 1, "no watch saw 410 Gone:\n{output}");
    assert!(gw.metrics().await.contains(
        "airgate_cluster_watch_errors_total{resource=\"hub.traefik.io/v1alpha1 AIGateway\"}"
    ));
}

fn lease_holder(kube: &FakeKube) -> Option<String> {
    kube.get(LEASE, "leases", "airgate-system", "airgate-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// The tokens (`token-<replica>`) that wrote status.
fn status_writers(kube: &FakeKube) -> Vec<String> {
    let mut writers: Vec<String> = kube
        .writes()
        .into_iter()
        .filter(|w| w.method == "PATCH")
        .map(|w| w.token)
        .collect();
    writers.dedup();
    writers
}

#[tokio::test]
async fn only_the_leader_writes_status_and_a_follower_takes_over_when_it_dies() {
    let kube = fake().await;
    let mock = backend().await;
    kube.apply("aigateways", default_gateway("m1", &mock.url()));
    let lease = ["--leader-lease-duration", "2s"];
    let mut a = replica(&kube, "replica-a", &lease).await;
    let mut b = replica(&kube, "replica-b", &lease).await;
    // followers serve exactly like the leader
    for gw in [&a, &b] {
        assert_eq!(models(gw, "").await, Some(vec!["m1".to_string()]));
    }
    eventually("a leader is elected and writes status", &a, || async {
        lease_holder(&kube).is_some()
            && condition(&kube.get(HUB, "aigateways", "ml", "gw"), "Programmed")["status"] == "True"
    })
    .await;
    let leader = lease_holder(&kube).unwrap();
    let (leading, following) = if leader == "replica-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert!(leading.metrics().await.contains("airgate_cluster_leader 1"));
    assert!(following
        .metrics()
        .await
        .contains("airgate_cluster_leader 0"));
    let mut bad = gateway(OWN, "ml", "bad", "m2", &mock.url(), json!({}));
    bad["spec"]["backends"][0]["url"] = json!("not a url");
    kube.apply("aigateways", bad);
    eventually("the leader reports the new resource", &a, || async {
        condition(&kube.get(OWN, "aigateways", "ml", "bad"), "Accepted")["status"] == "False"
    })
    .await;
    assert_eq!(status_writers(&kube), vec![format!("token-{leader}")]);

    // the leader dies without releasing the lease: the follower takes over when it expires
    let (dead, survivor) = if leader == "replica-a" {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.kill();
    let follower = if leader == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    let took = eventually("the follower takes the lease over", survivor, || async {
        lease_holder(&kube).as_deref() == Some(follower)
    })
    .await;
    println!("takeover after {took:?} (lease 2s)");
    let lease = kube
        .get(LEASE, "leases", "airgate-system", "airgate-leader")
        .unwrap();
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1,
        "{lease}"
    );
    kube.apply(
        "aigateways",
        gateway(OWN, "ml", "after", "m3", &mock.url(), json!({})),
    );
    eventually("the new leader writes status", survivor, || async {
        condition(&kube.get(OWN, "aigateways", "ml", "after"), "Programmed")["status"] == "True"
    })
    .await;
    assert_eq!(
        status_writers(&kube),
        vec![format!("token-{leader}"), format!("token-{follower}")]
    );
}

#[tokio::test]
async fn a_leader_that_stops_releases_its_lease_at_once() {
    let kube = fake().await;
    let mock = backend().await;
    kube.apply("aigateways", default_gateway("m1", &mock.url()));
    // a lease far longer than the test: only a release lets the follower lead in time
    let lease = ["--leader-lease-duration", "60s"];
    let first = replica(&kube, "first", &lease).await;
    eventually("the first replica leads", &first, || async {
        lease_holder(&kube).as_deref() == Some("first")
    })
    .await;
    let second = replica(&kube, "second", &lease).await;
    first.terminate();
    eventually(
        "the second replica leads after the release",
        &second,
        || async { lease_holder(&kube).as_deref() == Some("second") },
    )
    .await;
}

#[tokio::test]
async fn a_group_installed_after_start_is_watched_once_served() {
    let kube = FakeKube::start(&["airgate.io"]).await.unwrap();
    let mock = backend().await;
    kube.apply(
        "aigateways",
        gateway(OWN, "ml", "own", "m1", &mock.url(), json!({})),
    );
    // stored, but its group is not served yet (Traefik Hub's CRDs not installed)
    kube.apply(
        "aigateways",
        gateway(HUB, "ml", "seed", "m2", &mock.url(), json!({})),
    );
    let gw = replica(&kube, "solo", &["--kubernetes-discovery-interval", "300ms"]).await;
    assert_eq!(
        models(&gw, "/gateways/ml/own").await,
        Some(vec!["m1".into()])
    );
    assert_eq!(models(&gw, "/gateways/ml/seed").await, None);
    assert!(gw.output().contains("does not serve this kind"));
    kube.serve_group("hub.traefik.io");
    eventually("the newly served group's gateway serves", &gw, || async {
        models(&gw, "/gateways/ml/seed").await == Some(vec!["m2".into()])
    })
    .await;
}

#[test]
fn config_and_kubernetes_together_are_refused() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_airgate"))
        .args(["serve", "--kubernetes", "--config", "x.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

/// A measurement, not a check (no timing is asserted): how long 500 gateways take to be ready,
/// and one more to be served among them, in debug builds. Run with
/// `cargo nextest run --test cluster --run-ignored only --no-capture measure`.
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn measure_a_change_among_500_gateways() {
    let kube = FakeKube::start(&["airgate.io"]).await.unwrap();
    let mock = backend().await;
    let n = 500;
    for i in 0..n {
        let mut object = gateway(
            OWN,
            &format!("ns{}", i % 20),
            &format!("gw{i}"),
            &format!("m{i}"),
            &mock.url(),
            json!({}),
        );
        object["spec"]["contentGuard"] =
            json!({"enabled": true, "blockPatterns": [{"regex": "(?i)secret", "action": "block"}]});
        kube.apply("aigateways", object);
    }
    let started = Instant::now();
    let gw = replica(&kube, "solo", &[]).await;
    println!("ready with {n} gateways after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    kube.apply(
        "aigateways",
        gateway(OWN, "ns0", "new", "fresh", &mock.url(), json!({})),
    );
    let took = eventually("the new gateway serves", &gw, || async {
        models(&gw, "/gateways/ns0/new").await.is_some()
    })
    .await;
    println!(
        "one change among {n} served after {took:?} ({:?} with the apply)",
        started.elapsed()
    );
}
