//! Who may read `/metrics`, decided as kube-rbac-proxy and controller-runtime's secure
//! metrics serving decide it: the caller's bearer token is reviewed by the API server
//! (a TokenReview), then the user it names is checked for `get` on the non-resource URL
//! `/metrics` (a SubjectAccessReview). This file is the pure part: the header, the
//! reviews to send, the decision from their answers, and the cache of decisions. The
//! calls themselves are `server::review`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{
    TokenReview, TokenReviewSpec, TokenReviewStatus, UserInfo,
};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};

/// The one path behind the gate, and the verb a reader needs on it.
pub const PATH: &str = "/metrics";
pub const VERB: &str = "get";

/// How `/metrics` is protected (`--metrics-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bearer token, reviewed by the API server (TokenReview + SubjectAccessReview).
    Kubernetes,
    /// No check at all: only on a loopback address.
    None,
}

impl Mode {
    /// `kubernetes` or `none`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "kubernetes" => Ok(Self::Kubernetes),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown metrics authentication {other:?}: use kubernetes or none"
            )),
        }
    }
}

/// Refuses unauthenticated metrics on any address but a loopback one: there, only
/// processes of the same host (or pod) can connect.
pub fn check_bind(mode: Mode, addr: SocketAddr) -> Result<(), String> {
    if mode == Mode::Kubernetes || addr.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--metrics-auth none serves /metrics to anyone who can connect, so it is allowed only on a loopback address, and --http-addr {addr} is not one: bind 127.0.0.1 or [::1], or keep --metrics-auth kubernetes"
    ))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case), or
/// None when there is no such header or it carries no token.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    let ok = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace);
    ok.then_some(token)
}

/// What the gate answers a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The user the token names may get `/metrics`.
    Allowed { user: String },
    /// No token, or one the API server does not accept (401).
    Unauthenticated { reason: &'static str },
    /// A valid token of a user who may not get `/metrics` (403).
    Forbidden { user: String },
}

impl Decision {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Decision::Allowed { .. } => 200,
            Decision::Unauthenticated { .. } => 401,
            Decision::Forbidden { .. } => 403,
        }
    }

    /// The body of a refusal: a sentence.
    pub fn sentence(&self) -> String {
        match self {
            Decision::Allowed { user } => format!("{user} may {VERB} {PATH}"),
            Decision::Unauthenticated { reason } => format!(
                "{reason}: {PATH} needs an Authorization: Bearer header with a Kubernetes token of a user allowed to {VERB} {PATH}"
            ),
            Decision::Forbidden { user } => format!(
                "{user} may not {VERB} {PATH}: bind it to a ClusterRole with nonResourceURLs [\"{PATH}\"] and verbs [\"{VERB}\"] (the chart's <release>-metrics-reader)"
            ),
        }
    }

    /// The label of `maturity_operator_metrics_auth_reviews_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allowed { .. } => "allowed",
            Decision::Unauthenticated { .. } => "unauthenticated",
            Decision::Forbidden { .. } => "forbidden",
        }
    }
}

/// The TokenReview of `token`, for the API server's own audiences (those of the tokens
/// it issues, such as a pod's projected ServiceAccount token).
pub fn token_review(token: &str) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: None,
        },
        ..Default::default()
    }
}

/// The user a TokenReview's answer names, or why the token is refused.
pub fn authenticated(status: Option<&TokenReviewStatus>) -> Result<UserInfo, Decision> {
    let refused = Decision::Unauthenticated {
        reason: "the bearer token was not accepted",
    };
    let Some(status) = status else {
        return Err(refused);
    };
    if status.authenticated != Some(true) || status.error.as_deref().is_some_and(|e| !e.is_empty())
    {
        return Err(refused);
    }
    match &status.user {
        Some(user) if user.username.as_deref().is_some_and(|u| !u.is_empty()) => Ok(user.clone()),
        _ => Err(refused),
    }
}

/// The SubjectAccessReview of `get /metrics` for `user`, with every attribute the
/// TokenReview gave (groups, uid, extra): RBAC bindings to a group count too.
pub fn access_review(user: &UserInfo) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(PATH.into()),
                verb: Some(VERB.into()),
            }),
            resource_attributes: None,
        },
        ..Default::default()
    }
}

/// The decision from a SubjectAccessReview's answer for `user`.
pub fn authorized(user: &UserInfo, status: Option<&SubjectAccessReviewStatus>) -> Decision {
    let user = user.username.clone().unwrap_or_default();
    match status {
        Some(s) if s.allowed && s.denied != Some(true) => Decision::Allowed { user },
        _ => Decision::Forbidden { user },
    }
}

/// How long decisions are kept, and how many.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub allowed_ttl: Duration,
    pub refused_ttl: Duration,
    pub capacity: usize,
}

impl Default for CacheSettings {
    /// Allowed 30 s, refused 10 s, 1024 tokens: a scrape every 15 s costs at most one
    /// pair of reviews per token per scrape, and the memory is bounded.
    fn default() -> Self {
        Self {
            allowed_ttl: Duration::from_secs(30),
            refused_ttl: Duration::from_secs(10),
            capacity: 1024,
        }
    }
}

/// Decisions by token (kept as its SHA-256, never the token itself), each until it
/// expires. Time is a parameter.
pub struct Cache {
    settings: CacheSettings,
    entries: HashMap<[u8; 32], (Decision, Instant)>,
}

fn key(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(digest.as_ref());
    k
}

impl Cache {
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
        }
    }

    /// The decision for `token` if one is kept and not expired at `now`.
    pub fn get(&self, token: &str, now: Instant) -> Option<Decision> {
        let (decision, expires) = self.entries.get(&key(token))?;
        (now < *expires).then(|| decision.clone())
    }

    /// Keeps `decision` for `token` from `now`: allowed ones longer than refusals. When
    /// full, expired entries go first, then the one closest to expiry.
    pub fn put(&mut self, token: &str, decision: Decision, now: Instant) {
        if self.settings.capacity == 0 {
            return;
        }
        let k = key(token);
        if !self.entries.contains_key(&k) && self.entries.len() >= self.settings.capacity {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.settings.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| *k);
                if let Some(s) = soonest {
                    self.entries.remove(&s);
                }
            }
        }
        let ttl = match decision {
            Decision::Allowed { .. } => self.settings.allowed_ttl,
            _ => self.settings.refused_ttl,
        };
        self.entries.insert(k, (decision, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserInfo {
        UserInfo {
            username: Some(name.into()),
            uid: Some("u-1".into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ]),
            extra: Some(
                [(
                    "authentication.kubernetes.io/pod-name".to_string(),
                    vec!["prometheus-0".to_string()],
                )]
                .into(),
            ),
        }
    }

    #[test]
    fn the_bearer_token_is_read_from_the_header() {
        assert_eq!(bearer_token(Some("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(None), None);
        assert_eq!(bearer_token(Some("")), None);
        assert_eq!(bearer_token(Some("Bearer")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(Some("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer_token(Some("Bearer a b")), None);
    }

    #[test]
    fn unauthenticated_metrics_only_on_loopback() {
        let ok = |a: &str| check_bind(Mode::None, a.parse().unwrap());
        assert!(ok("127.0.0.1:8080").is_ok());
        assert!(ok("127.0.0.2:0").is_ok());
        assert!(ok("[::1]:8080").is_ok());
        assert!(ok("[::ffff:127.0.0.1]:8080").is_ok());
        let refused = ok("0.0.0.0:8080").unwrap_err();
        assert!(
            refused.contains("only on a loopback address") && refused.contains("0.0.0.0:8080"),
            "{refused}"
        );
        assert!(ok("[::]:8080").is_err());
        assert!(ok("10.0.0.5:8080").is_err());
        assert!(check_bind(Mode::Kubernetes, "0.0.0.0:8080".parse().unwrap()).is_ok());
        assert_eq!(Mode::parse("none"), Ok(Mode::None));
        assert_eq!(Mode::parse("kubernetes"), Ok(Mode::Kubernetes));
        assert!(Mode::parse("basic").is_err());
    }

    #[test]
    fn a_token_review_names_the_user_or_refuses() {
        let review = token_review("t0k");
        assert_eq!(review.spec.token.as_deref(), Some("t0k"));
        let status =
            |authenticated, error: Option<&str>, user: Option<UserInfo>| TokenReviewStatus {
                authenticated: Some(authenticated),
                error: error.map(String::from),
                user,
                audiences: None,
            };
        let sa = user("system:serviceaccount:monitoring:prometheus");
        assert_eq!(
            authenticated(Some(&status(true, None, Some(sa.clone())))),
            Ok(sa.clone())
        );
        for refused in [
            None,
            Some(status(false, None, Some(sa.clone()))),
            Some(status(true, Some("invalid bearer token"), Some(sa.clone()))),
            Some(status(true, None, None)),
            Some(status(true, None, Some(UserInfo::default()))),
        ] {
            let d = authenticated(refused.as_ref()).unwrap_err();
            assert_eq!(d.status(), 401, "{refused:?}");
        }
    }

    #[test]
    fn the_access_review_carries_the_whole_user_and_the_decision_follows_it() {
        let sa = user("system:serviceaccount:monitoring:prometheus");
        let review = access_review(&sa);
        let attrs = review.spec.non_resource_attributes.clone().unwrap();
        assert_eq!(
            (attrs.path.as_deref(), attrs.verb.as_deref()),
            (Some("/metrics"), Some("get"))
        );
        assert!(review.spec.resource_attributes.is_none());
        assert_eq!(review.spec.user, sa.username);
        assert_eq!(review.spec.uid, sa.uid);
        assert_eq!(review.spec.groups, sa.groups);
        assert_eq!(review.spec.extra, sa.extra);

        let answer = |allowed, denied| SubjectAccessReviewStatus {
            allowed,
            denied,
            evaluation_error: None,
            reason: None,
        };
        assert_eq!(
            authorized(&sa, Some(&answer(true, None))),
            Decision::Allowed {
                user: "system:serviceaccount:monitoring:prometheus".into()
            }
        );
        let no = authorized(&sa, Some(&answer(false, None)));
        assert_eq!(no.status(), 403);
        assert!(
            no.sentence()
                .starts_with("system:serviceaccount:monitoring:prometheus may not get /metrics:"),
            "{}",
            no.sentence()
        );
        assert_eq!(
            authorized(&sa, Some(&answer(true, Some(true)))).status(),
            403
        );
        assert_eq!(authorized(&sa, None).status(), 403);
    }

    fn allowed(user: &str) -> Decision {
        Decision::Allowed { user: user.into() }
    }

    #[test]
    fn the_cache_keeps_allowed_30s_and_refusals_10s() {
        let mut cache = Cache::new(CacheSettings::default());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        cache.put("good", allowed("a"), t0);
        cache.put("bad", Decision::Forbidden { user: "b".into() }, t0);
        assert_eq!(cache.get("good", t0 + s(29)), Some(allowed("a")));
        assert_eq!(cache.get("good", t0 + s(30)), None);
        assert_eq!(cache.get("bad", t0 + s(9)).map(|d| d.status()), Some(403));
        assert_eq!(cache.get("bad", t0 + s(10)), None);
        assert_eq!(cache.get("other", t0), None);
        // A scrape every 15 s with an allowed token: one review per 30 s.
        let mut reviews = 0;
        let mut cache = Cache::new(CacheSettings::default());
        for scrape in 0..8 {
            let now = t0 + s(15 * scrape);
            if cache.get("prom", now).is_none() {
                reviews += 1;
                cache.put("prom", allowed("prom"), now);
            }
        }
        assert_eq!(reviews, 4);
    }

    #[test]
    fn the_cache_is_bounded_and_drops_expired_then_soonest_first() {
        let mut cache = Cache::new(CacheSettings {
            capacity: 3,
            ..CacheSettings::default()
        });
        let t0 = Instant::now();
        let s = Duration::from_secs;
        cache.put("refused", Decision::Unauthenticated { reason: "no" }, t0);
        cache.put("a", allowed("a"), t0);
        cache.put("b", allowed("b"), t0 + s(1));
        // Full: the refusal (closest to expiry) makes room.
        cache.put("c", allowed("c"), t0 + s(2));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("refused", t0 + s(2)), None);
        assert!(cache.get("a", t0 + s(2)).is_some());
        // Later, every entry has expired: all go, the new one stays.
        cache.put("d", allowed("d"), t0 + s(100));
        assert_eq!(cache.len(), 1);
        assert!(cache.get("d", t0 + s(100)).is_some());
        // Updating a kept token never evicts another.
        cache.put("d", allowed("d"), t0 + s(101));
        assert_eq!(cache.len(), 1);
        let mut none = Cache::new(CacheSettings {
            capacity: 0,
            ..CacheSettings::default()
        });
        none.put("x", allowed("x"), t0);
        assert!(none.is_empty());
    }

    #[test]
    fn refusals_are_sentences() {
        let d = Decision::Unauthenticated {
            reason: "no bearer token",
        };
        assert_eq!(d.status(), 401);
        assert!(d.sentence().starts_with("no bearer token: /metrics needs"));
        assert_eq!(d.label(), "unauthenticated");
    }
}
