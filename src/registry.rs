//! Which handlers run for which events.

use std::fmt;
use std::sync::Arc;

use crate::handler::Handler;

/// Routes `(provider, kind pattern)` to critical and best-effort handlers.
///
/// - **Critical** handlers run before the pipeline answers, one after the other
///   in registration order, under the provider's deadline; the delivery is
///   acknowledged (2xx) only when all of them succeed.
/// - **Best-effort** handlers run after the critical ones succeeded, each
///   independently, with retries and a dead letter.
///
/// Kind patterns: an exact kind (`checkout.session.completed`), a prefix
/// (`checkout.*` matches every kind starting with `checkout.`), or `*` (every
/// kind). GitHub kinds are `event.action` (`issues.opened`) and also match the
/// bare event name (`issues`), as the verifier's
/// [`ProviderProfile::kinds_carry_action`](crate::ProviderProfile::kinds_carry_action) says. The provider is a verifier's name, or `*` for any
/// provider. An invalid pattern (a `*` anywhere else, an empty pattern) never
/// matches and makes [`PipelineBuilder::build`](crate::PipelineBuilder::build) fail.
///
/// ```
/// use hookgate::{handler_fn, HandlerError, Registry};
/// let mut registry = Registry::new();
/// registry
///     .critical("stripe", "checkout.session.completed", "mark_paid", handler_fn(|_| async { Ok::<(), HandlerError>(()) }))
///     .best_effort("github", "issues", "notify", handler_fn(|_| async { Ok::<(), HandlerError>(()) }));
/// assert!(!registry.is_empty());
/// ```
#[derive(Default, Clone)]
pub struct Registry {
    routes: Vec<Route>,
    /// Critical handlers that run in the store's transaction.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    transactional: Vec<TxRoute>,
}

/// A transactional critical handler's route.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[derive(Clone)]
struct TxRoute {
    provider: String,
    pattern: String,
    handler: crate::transactional::NamedTxHandler,
}

#[derive(Clone)]
struct Route {
    provider: String,
    pattern: String,
    role: Role,
    handler: NamedHandler,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Critical,
    BestEffort,
}

/// A registered handler and the name it was registered with (used in outcomes,
/// dead letters and statistics).
#[derive(Clone)]
pub(crate) struct NamedHandler {
    name: Arc<str>,
    handler: Arc<dyn Handler>,
}

impl NamedHandler {
    /// The name given at registration.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The handler.
    pub(crate) fn handler(&self) -> &Arc<dyn Handler> {
        &self.handler
    }

    pub(crate) fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }
}

impl fmt::Debug for NamedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NamedHandler").field(&self.name).finish()
    }
}

/// A kind pattern or provider name that can never match as intended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The kind pattern has a `*` somewhere other than alone or as a final `.*`.
    #[error("kind pattern `{pattern}` of handler `{handler}` is invalid: use an exact kind, `prefix.*` or `*`")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// The handler registered with it.
        handler: String,
    },
    /// The provider name is empty.
    #[error("handler `{handler}` is registered for an empty provider name: use a verifier's name or `*`")]
    EmptyProvider {
        /// The handler.
        handler: String,
    },
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a critical handler for `provider` events whose kind matches `pattern`.
    pub fn critical(
        &mut self,
        provider: &str,
        pattern: &str,
        name: &str,
        handler: impl Handler + 'static,
    ) -> &mut Self {
        self.add(Role::Critical, provider, pattern, name, Arc::new(handler))
    }

    /// Adds a best-effort handler for `provider` events whose kind matches `pattern`.
    pub fn best_effort(
        &mut self,
        provider: &str,
        pattern: &str,
        name: &str,
        handler: impl Handler + 'static,
    ) -> &mut Self {
        self.add(Role::BestEffort, provider, pattern, name, Arc::new(handler))
    }

    fn add(
        &mut self,
        role: Role,
        provider: &str,
        pattern: &str,
        name: &str,
        handler: Arc<dyn Handler>,
    ) -> &mut Self {
        self.routes.push(Route {
            provider: provider.to_owned(),
            pattern: pattern.to_owned(),
            role,
            handler: NamedHandler {
                name: name.into(),
                handler,
            },
        });
        self
    }

    /// Adds a critical handler for `provider` events whose kind matches
    /// `pattern` that writes in the PostgreSQL transaction which also
    /// completes the event's key (see [`transactional`](crate::transactional)).
    /// It runs after the plain critical handlers of the event, in
    /// registration order with the other transactional ones. The pipeline's
    /// store must be a [`PostgresStore`](crate::store::postgres::PostgresStore).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn critical_in_postgres(
        &mut self,
        provider: &str,
        pattern: &str,
        name: &str,
        handler: impl crate::transactional::postgres::PostgresHandler + 'static,
    ) -> &mut Self {
        let handler = crate::transactional::TxHandler::postgres(handler);
        self.add_transactional(provider, pattern, name, handler)
    }

    /// Adds a critical handler for `provider` events whose kind matches
    /// `pattern` that writes in the SQLite transaction which also completes
    /// the event's key (see [`transactional`](crate::transactional)). It runs
    /// after the plain critical handlers of the event, in registration order
    /// with the other transactional ones. The pipeline's store must be an
    /// [`SqliteStore`](crate::store::sqlite::SqliteStore).
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn critical_in_sqlite(
        &mut self,
        provider: &str,
        pattern: &str,
        name: &str,
        handler: impl crate::transactional::sqlite::SqliteHandler + 'static,
    ) -> &mut Self {
        let handler = crate::transactional::TxHandler::sqlite(handler);
        self.add_transactional(provider, pattern, name, handler)
    }

    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    fn add_transactional(
        &mut self,
        provider: &str,
        pattern: &str,
        name: &str,
        handler: crate::transactional::TxHandler,
    ) -> &mut Self {
        self.transactional.push(TxRoute {
            provider: provider.to_owned(),
            pattern: pattern.to_owned(),
            handler: crate::transactional::NamedTxHandler {
                name: name.into(),
                handler,
            },
        });
        self
    }

    /// Every registration as (provider, pattern, handler name).
    fn registrations(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        let plain = self
            .routes
            .iter()
            .map(|r| (r.provider.as_str(), r.pattern.as_str(), r.handler.name()));
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        let plain = plain.chain(
            self.transactional
                .iter()
                .map(|r| (r.provider.as_str(), r.pattern.as_str(), &*r.handler.name)),
        );
        plain
    }

    /// Every registration that can never match as intended.
    pub(crate) fn validate(&self) -> Result<(), RouteError> {
        for (provider, pattern, handler) in self.registrations() {
            if provider.is_empty() {
                return Err(RouteError::EmptyProvider {
                    handler: handler.to_owned(),
                });
            }
            if !pattern_is_valid(pattern) {
                return Err(RouteError::InvalidPattern {
                    pattern: pattern.to_owned(),
                    handler: handler.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The provider names handlers are registered for (`*` included).
    pub(crate) fn providers(&self) -> impl Iterator<Item = &str> {
        self.registrations().map(|(provider, _, _)| provider)
    }

    /// Every transactional handler registered, whatever it routes.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn transactional_handlers(
        &self,
    ) -> impl Iterator<Item = &crate::transactional::NamedTxHandler> {
        self.transactional.iter().map(|r| &r.handler)
    }

    /// The first best-effort handler registered under `name` (the outbox
    /// relay runs jobs by their handler's name).
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn best_effort_named(&self, name: &str) -> Option<&NamedHandler> {
        self.routes
            .iter()
            .find(|r| r.role == Role::BestEffort && r.handler.name() == name)
            .map(|r| &r.handler)
    }

    /// The handlers for an event of `provider` and `kind`; with
    /// `kinds_carry_action` (the provider's profile says kinds are
    /// `event.action`), a pattern naming the bare event matches too.
    pub(crate) fn route<'a>(
        &'a self,
        provider: &'a str,
        kind: &'a str,
        kinds_carry_action: bool,
    ) -> Routes<'a> {
        Routes {
            registry: self,
            provider,
            kind,
            kinds_carry_action,
        }
    }

    /// Whether no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.registrations().next().is_none()
    }
}

fn pattern_is_valid(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let exact = pattern.strip_suffix(".*").unwrap_or(pattern);
    !exact.is_empty() && !exact.contains('*')
}

/// Whether a route for `provider` and `pattern` takes an event of
/// `event_provider` and `kind`; `kinds_carry_action` (from the provider's
/// profile) lets a bare event name match `event.action` kinds.
fn matches(
    provider: &str,
    pattern: &str,
    event_provider: &str,
    kind: &str,
    kinds_carry_action: bool,
) -> bool {
    if provider != "*" && provider != event_provider {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix(".*") {
        return !prefix.is_empty()
            && !prefix.contains('*')
            && kind.len() > prefix.len() + 1
            && kind.starts_with(prefix)
            && kind.as_bytes()[prefix.len()] == b'.';
    }
    if pattern.contains('*') {
        return false;
    }
    kind == pattern
        || (kinds_carry_action && kind.split_once('.').map(|(event, _)| event) == Some(pattern))
}

/// The handlers that match one event; see [`Registry::route`].
#[derive(Clone, Copy)]
pub(crate) struct Routes<'a> {
    registry: &'a Registry,
    provider: &'a str,
    kind: &'a str,
    kinds_carry_action: bool,
}

impl<'a> Routes<'a> {
    fn of(self, role: Role) -> impl Iterator<Item = &'a NamedHandler> + 'a {
        let Routes {
            registry,
            provider,
            kind,
            kinds_carry_action,
        } = self;
        registry
            .routes
            .iter()
            .filter(move |r| {
                r.role == role
                    && matches(&r.provider, &r.pattern, provider, kind, kinds_carry_action)
            })
            .map(|r| &r.handler)
    }

    /// Critical handlers, in registration order.
    pub(crate) fn critical(self) -> impl Iterator<Item = &'a NamedHandler> + 'a {
        self.of(Role::Critical)
    }

    /// Best-effort handlers, in registration order.
    pub(crate) fn best_effort(self) -> impl Iterator<Item = &'a NamedHandler> + 'a {
        self.of(Role::BestEffort)
    }

    /// Transactional critical handlers, in registration order.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn transactional(
        self,
    ) -> impl Iterator<Item = &'a crate::transactional::NamedTxHandler> + 'a {
        let Routes {
            registry,
            provider,
            kind,
            kinds_carry_action,
        } = self;
        registry
            .transactional
            .iter()
            .filter(move |r| matches(&r.provider, &r.pattern, provider, kind, kinds_carry_action))
            .map(|r| &r.handler)
    }

    /// Whether no handler of any kind matches.
    pub(crate) fn is_empty(self) -> bool {
        let Routes {
            registry,
            provider,
            kind,
            kinds_carry_action,
        } = self;
        !registry
            .registrations()
            .any(|(p, pattern, _)| matches(p, pattern, provider, kind, kinds_carry_action))
    }
}

impl fmt::Debug for Routes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("critical", &self.critical().collect::<Vec<_>>())
            .field("best_effort", &self.best_effort().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for r in &self.routes {
            list.entry(&format_args!(
                "{:?} {} {} -> {}",
                r.role,
                r.provider,
                r.pattern,
                r.handler.name()
            ));
        }
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        for r in &self.transactional {
            list.entry(&format_args!(
                "Transactional {} {} -> {}",
                r.provider, r.pattern, r.handler.name
            ));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{handler_fn, HandlerError};

    fn noop() -> impl Handler + 'static {
        handler_fn(|_| async { Ok::<(), HandlerError>(()) })
    }

    #[test]
    fn a_prefix_pattern_needs_a_dot_and_something_after_it() {
        let m = |kind| matches("stripe", "invoice.*", "stripe", kind, false);
        assert!(m("invoice.paid"));
        assert!(m("invoice.payment.failed"));
        assert!(m("invoice.x"), "one character after the dot is enough");
        for kind in ["invoice.", "invoice", "invoices.paid", "invoicex", ""] {
            assert!(!m(kind), "{kind}");
        }
    }

    #[test]
    fn a_registry_is_empty_until_a_handler_is_registered() {
        let mut registry = Registry::new();
        assert!(registry.is_empty());
        registry.best_effort("stripe", "*", "email", noop());
        assert!(!registry.is_empty());
        let mut critical = Registry::new();
        critical.critical("stripe", "*", "db", noop());
        assert!(!critical.is_empty());
    }

    #[test]
    fn a_registry_and_its_routes_debug_as_their_handlers() {
        let mut registry = Registry::new();
        registry.critical("stripe", "invoice.*", "db", noop());
        registry.best_effort("*", "*", "email", noop());
        assert_eq!(
            format!("{registry:?}"),
            "[Critical stripe invoice.* -> db, BestEffort * * -> email]"
        );
        let routes = registry.route("stripe", "invoice.paid", false);
        assert_eq!(
            format!("{routes:?}"),
            r#"Routes { critical: [NamedHandler("db")], best_effort: [NamedHandler("email")] }"#
        );
    }

    #[test]
    fn a_named_handler_debugs_as_its_name() {
        let handler = NamedHandler {
            name: "email_receipt".into(),
            handler: Arc::new(noop()),
        };
        assert_eq!(format!("{handler:?}"), r#"NamedHandler("email_receipt")"#);
    }

    fn names<'a>(handlers: impl Iterator<Item = &'a NamedHandler>) -> Vec<String> {
        handlers.map(|h| h.name().to_owned()).collect()
    }

    #[test]
    fn routing_table() {
        let mut registry = Registry::new();
        registry
            .critical("stripe", "checkout.session.completed", "exact", noop())
            .critical("stripe", "checkout.*", "prefix", noop())
            .critical("stripe", "*", "any_stripe", noop())
            .critical("github", "issues", "gh_event", noop())
            .critical("github", "issues.opened", "gh_exact", noop())
            .critical("github", "pull_request.*", "gh_prefix", noop())
            .critical("shopify", "orders/create", "shop_exact", noop())
            .critical("*", "*", "everything", noop());

        let table: &[(&str, &str, &[&str])] = &[
            (
                "stripe",
                "checkout.session.completed",
                &["exact", "prefix", "any_stripe", "everything"],
            ),
            (
                "stripe",
                "checkout.session.expired",
                &["prefix", "any_stripe", "everything"],
            ),
            ("stripe", "checkout", &["any_stripe", "everything"]),
            ("stripe", "checkoutx.session", &["any_stripe", "everything"]),
            ("stripe", "invoice.paid", &["any_stripe", "everything"]),
            (
                "github",
                "issues.opened",
                &["gh_event", "gh_exact", "everything"],
            ),
            ("github", "issues.closed", &["gh_event", "everything"]),
            ("github", "issues", &["gh_event", "everything"]),
            ("github", "issues_comment.created", &["everything"]),
            (
                "github",
                "pull_request.opened",
                &["gh_prefix", "everything"],
            ),
            ("github", "pull_request", &["everything"]),
            ("shopify", "orders/create", &["shop_exact", "everything"]),
            ("shopify", "orders/create.x", &["everything"]),
            ("slack", "message", &["everything"]),
        ];
        for (provider, kind, expected) in table {
            let got = names(
                registry
                    .route(provider, kind, *provider == "github")
                    .critical(),
            );
            assert_eq!(&got, expected, "{provider} {kind}");
        }
    }

    #[test]
    fn bare_event_name_matches_action_kinds_only_for_github() {
        let mut registry = Registry::new();
        registry.critical("*", "checkout", "bare", noop()).critical(
            "*",
            "issues",
            "bare_issues",
            noop(),
        );
        assert!(registry
            .route("stripe", "checkout.session.completed", false)
            .is_empty());
        assert_eq!(
            names(registry.route("github", "issues.opened", true).critical()),
            ["bare_issues"]
        );
    }

    #[test]
    fn critical_and_best_effort_are_listed_apart_in_registration_order() {
        let mut registry = Registry::new();
        registry
            .best_effort("github", "*", "notify_b", noop())
            .critical("github", "push", "second", noop())
            .best_effort("github", "push", "notify_a", noop());
        registry.critical("github", "*", "third", noop());
        let routes = registry.route("github", "push", true);
        assert_eq!(names(routes.critical()), ["second", "third"]);
        assert_eq!(names(routes.best_effort()), ["notify_b", "notify_a"]);
        assert!(!routes.is_empty());
    }

    #[test]
    fn invalid_patterns_never_match_and_fail_validation() {
        for pattern in ["check*", "*.completed", "a.*.b", "", ".*", "**"] {
            let mut registry = Registry::new();
            registry.critical("stripe", pattern, "bad", noop());
            assert!(
                matches!(registry.validate(), Err(RouteError::InvalidPattern { .. })),
                "{pattern:?}"
            );
            assert!(
                registry
                    .route("stripe", "checkout.session.completed", false)
                    .is_empty(),
                "{pattern:?}"
            );
        }
        let mut registry = Registry::new();
        registry.best_effort("", "*", "nobody", noop());
        assert!(matches!(
            registry.validate(),
            Err(RouteError::EmptyProvider { .. })
        ));
        assert!(Registry::new().validate().is_ok());
    }
}
