//! From configuration to access settings: the `authentication.jwt` and `rateLimit` sections of
//! `AIGateway` and `API` resolved into what the verifier and the limiter take.

use std::path::Path;
use std::sync::Arc;

use super::{ApprovalRule, JwtSettings, JwtVerifier, KeyError, Limit};
use crate::config::{AiRateLimitSpec, AuthenticationSpec, JwtSpec, LimitSpec};

/// Completion tokens reserved when a request sets no `max_tokens` and the config names none.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

impl JwtSettings {
    pub fn from_spec(spec: &JwtSpec) -> Self {
        let mut settings = JwtSettings::new(spec.secret_name.clone());
        settings.secret_key.clone_from(&spec.secret_key);
        settings.issuer.clone_from(&spec.issuer);
        settings.audience.clone_from(&spec.audience);
        settings.algorithms.clone_from(&spec.algorithms);
        settings.user_claim.clone_from(&spec.user_claim);
        if let Some(leeway) = spec.leeway {
            settings.leeway = leeway.0;
        }
        settings.approval = spec.approval.as_ref().map(|a| ApprovalRule {
            claim: a.claim.clone(),
            value: a.value.clone(),
        });
        settings
    }
}

/// Loads the verifier of `authentication.jwt`, if configured.
pub fn load_verifier(
    auth: Option<&AuthenticationSpec>,
    secrets_dir: &Path,
) -> Result<Option<Arc<JwtVerifier>>, KeyError> {
    let Some(jwt) = auth.and_then(|a| a.jwt.as_ref()) else {
        return Ok(None);
    };
    JwtVerifier::load(&JwtSettings::from_spec(jwt), secrets_dir).map(|v| Some(Arc::new(v)))
}

/// A token budget: prompt plus completion tokens per period, per user.
#[derive(Debug, Clone, Copy)]
pub struct TokenBudget {
    pub budget: Limit,
    pub default_max_tokens: u64,
}

/// An `AIGateway`'s request limits and token budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayLimits {
    pub global: Option<Limit>,
    pub per_user: Option<Limit>,
    pub tokens: Option<TokenBudget>,
}

impl GatewayLimits {
    pub fn from_spec(spec: Option<&AiRateLimitSpec>) -> Self {
        let Some(spec) = spec else {
            return Self::default();
        };
        let limit = |l: &LimitSpec| Limit::new(l.limit, l.period.0);
        let tokens = spec.per_user.as_ref().and_then(|user| {
            user.tokens.map(|tokens| TokenBudget {
                budget: Limit::new(tokens, user.period.0),
                default_max_tokens: user.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            })
        });
        Self {
            global: spec.global.as_ref().map(limit),
            per_user: spec.per_user.as_ref().map(limit),
            tokens,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.per_user.is_none() && self.tokens.is_none()
    }
}
