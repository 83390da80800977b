//! Which backends a request may try, and in what order.
//!
//! Candidates are the backends that list the model (`auto`: every backend). Backends that need
//! approval are dropped for unapproved requests. Lower `priority` goes first; within a priority,
//! the backend with the fewest outstanding requests goes first, ties broken at random so equal
//! backends share the load. Unhealthy backends (cooling down or failing their probe) are left out;
//! when that would leave nothing, every candidate is tried anyway in the same order ("panic
//! routing", as Envoy does), since refusing outright helps nobody once the whole fleet looks down.

use std::sync::Arc;

use rand::Rng;

use super::Backend;

/// The model name that means "any backend".
pub const AUTO_MODEL: &str = "auto";

#[derive(Debug, Default)]
pub struct Plan {
    /// In the order to try them.
    pub candidates: Vec<Arc<Backend>>,
    /// Backends that serve the model but need an approval the request does not carry.
    pub needs_approval: Vec<String>,
}

pub fn plan(backends: &[Arc<Backend>], model: &str, approved: bool) -> Plan {
    let mut result = Plan::default();
    let mut ranked: Vec<(u32, bool, usize, u32, Arc<Backend>)> = Vec::new();
    let mut rng = rand::thread_rng();
    for backend in backends {
        if model != AUTO_MODEL && !backend.serves(model) {
            continue;
        }
        if backend.requires_approval && !approved {
            result.needs_approval.push(backend.name.clone());
            continue;
        }
        ranked.push((
            backend.priority,
            !backend.is_healthy(),
            backend.outstanding(),
            rng.gen(),
            Arc::clone(backend),
        ));
    }
    let any_healthy = ranked.iter().any(|r| !r.1);
    if any_healthy {
        ranked.retain(|r| !r.1);
    }
    ranked.sort_by_key(|r| (r.0, r.2, r.3));
    result.candidates = ranked.into_iter().map(|r| r.4).collect();
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::BackendSpec;
    use crate::routing::HealthSettings;
    use std::time::Duration;

    fn backend(name: &str, priority: u32, models: &[&str], approval: bool) -> Arc<Backend> {
        let yaml = format!(
            "name: {name}\nurl: http://127.0.0.1:1\nmodels: [{}]\npriority: {priority}\nrequiresApproval: {approval}\n",
            models.join(", ")
        );
        let spec: BackendSpec = serde_yaml_ng::from_str(&yaml).unwrap();
        let settings = HealthSettings {
            failure_threshold: 1,
            cooldown: Duration::from_secs(60),
        };
        let trust = crate::routing::BackendTrust::default();
        let client = crate::routing::UpstreamClients::new(&trust, std::path::Path::new("/"))
            .default_client()
            .unwrap();
        Arc::new(Backend::try_new(&spec, settings, client).unwrap())
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.candidates.iter().map(|b| b.name.as_str()).collect()
    }

    #[test]
    fn lower_priority_first_and_only_backends_with_the_model() {
        let all = vec![
            backend("p2", 2, &["m"], false),
            backend("p1", 1, &["m"], false),
            backend("other", 1, &["x"], false),
        ];
        assert_eq!(names(&plan(&all, "m", false)), vec!["p1", "p2"]);
        assert_eq!(plan(&all, "auto", false).candidates.len(), 3);
        assert!(plan(&all, "nope", false).candidates.is_empty());
    }

    #[test]
    fn approval_backends_are_skipped_unless_approved() {
        let all = vec![
            backend("a", 1, &["m"], false),
            backend("cloud", 2, &["m"], true),
        ];
        let p = plan(&all, "m", false);
        assert_eq!(names(&p), vec!["a"]);
        assert_eq!(p.needs_approval, vec!["cloud"]);
        assert_eq!(names(&plan(&all, "m", true)), vec!["a", "cloud"]);
    }

    #[test]
    fn least_outstanding_goes_first_within_a_priority() {
        let all = vec![
            backend("busy", 1, &["m"], false),
            backend("idle", 1, &["m"], false),
        ];
        let _guard = all[0].start_request();
        for _ in 0..20 {
            assert_eq!(names(&plan(&all, "m", false)), vec!["idle", "busy"]);
        }
    }

    #[test]
    fn ties_are_shared_at_random() {
        let all = vec![
            backend("a", 1, &["m"], false),
            backend("b", 1, &["m"], false),
        ];
        let firsts: std::collections::HashSet<String> = (0..64)
            .map(|_| plan(&all, "m", false).candidates[0].name.clone())
            .collect();
        assert_eq!(firsts.len(), 2);
    }

    #[test]
    fn unhealthy_backends_are_skipped_unless_all_are_unhealthy() {
        let all = vec![
            backend("down", 1, &["m"], false),
            backend("up", 2, &["m"], false),
        ];
        all[0].record_failure();
        assert_eq!(names(&plan(&all, "m", false)), vec!["up"]);
        all[1].record_failure();
        assert_eq!(names(&plan(&all, "m", false)), vec!["down", "up"]);
    }
}
