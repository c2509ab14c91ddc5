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
/// bare event name (`issues`). The provider is a verifier's name, or `*` for any
/// provider. An invalid pattern (a `*` anywhere else, an empty pattern) never
/// matches and makes [`PipelineBuilder::build`](crate::PipelineBuilder::build) fail.
///
/// ```
/// use hookgate::{handler_fn, HandlerError, Registry};
/// let mut registry = Registry::new();
/// registry
///     .critical("stripe", "checkout.session.completed", "mark_paid", handler_fn(|_| async { Ok::<(), HandlerError>(()) }))
///     .best_effort("github", "issues", "notify", handler_fn(|_| async { Ok::<(), HandlerError>(()) }));
/// let routes = registry.route("github", "issues.opened");
/// assert_eq!(routes.best_effort().map(|h| h.name()).collect::<Vec<_>>(), ["notify"]);
/// assert!(registry.route("stripe", "invoice.paid").is_empty());
/// ```
#[derive(Default, Clone)]
pub struct Registry {
    routes: Vec<Route>,
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
pub struct NamedHandler {
    name: Arc<str>,
    handler: Arc<dyn Handler>,
}

impl NamedHandler {
    /// The name given at registration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handler.
    pub fn handler(&self) -> &Arc<dyn Handler> {
        &self.handler
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // used by the pipeline
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

    /// Every registration that can never match as intended.
    pub fn validate(&self) -> Result<(), RouteError> {
        for route in &self.routes {
            if route.provider.is_empty() {
                return Err(RouteError::EmptyProvider {
                    handler: route.handler.name().to_owned(),
                });
            }
            if !pattern_is_valid(&route.pattern) {
                return Err(RouteError::InvalidPattern {
                    pattern: route.pattern.clone(),
                    handler: route.handler.name().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The provider names handlers are registered for (`*` included).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // used by the pipeline
    pub(crate) fn providers(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.provider.as_str())
    }

    /// The handlers for an event of `provider` and `kind`.
    pub fn route<'a>(&'a self, provider: &'a str, kind: &'a str) -> Routes<'a> {
        Routes {
            registry: self,
            provider,
            kind,
        }
    }

    /// Whether no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn pattern_is_valid(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let exact = pattern.strip_suffix(".*").unwrap_or(pattern);
    !exact.is_empty() && !exact.contains('*')
}

fn matches(provider: &str, pattern: &str, event_provider: &str, kind: &str) -> bool {
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
        || (event_provider == "github"
            && kind.split_once('.').map(|(event, _)| event) == Some(pattern))
}

/// The handlers that match one event; see [`Registry::route`].
#[derive(Clone, Copy)]
pub struct Routes<'a> {
    registry: &'a Registry,
    provider: &'a str,
    kind: &'a str,
}

impl<'a> Routes<'a> {
    fn of(self, role: Role) -> impl Iterator<Item = &'a NamedHandler> + 'a {
        let Routes {
            registry,
            provider,
            kind,
        } = self;
        registry
            .routes
            .iter()
            .filter(move |r| r.role == role && matches(&r.provider, &r.pattern, provider, kind))
            .map(|r| &r.handler)
    }

    /// Critical handlers, in registration order.
    pub fn critical(self) -> impl Iterator<Item = &'a NamedHandler> + 'a {
        self.of(Role::Critical)
    }

    /// Best-effort handlers, in registration order.
    pub fn best_effort(self) -> impl Iterator<Item = &'a NamedHandler> + 'a {
        self.of(Role::BestEffort)
    }

    /// Whether no handler of either kind matches.
    pub fn is_empty(self) -> bool {
        let Routes {
            registry,
            provider,
            kind,
        } = self;
        !registry
            .routes
            .iter()
            .any(|r| matches(&r.provider, &r.pattern, provider, kind))
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
        list.finish()
    }
}
