//! The routing table: which handlers a `(provider, kind)` reaches.

use hookgate::registry::RouteError;
use hookgate::{handler_fn, HandlerError, Registry};

fn noop() -> impl hookgate::Handler + 'static {
    handler_fn(|_| async { Ok::<(), HandlerError>(()) })
}

fn names<'a>(handlers: impl Iterator<Item = &'a hookgate::registry::NamedHandler>) -> Vec<String> {
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
        let got = names(registry.route(provider, kind).critical());
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
        .route("stripe", "checkout.session.completed")
        .is_empty());
    assert_eq!(
        names(registry.route("github", "issues.opened").critical()),
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
    let routes = registry.route("github", "push");
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
                .route("stripe", "checkout.session.completed")
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
