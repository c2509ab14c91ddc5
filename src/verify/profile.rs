//! What a provider does around its signatures: how big its bodies get, how long
//! it waits for an answer, how long it keeps retrying, how it names events.
//!
//! The pipeline derives its per-provider defaults ([`ProviderLimits`](crate::ProviderLimits))
//! from the verifier's [`ProviderProfile`], so adding a provider touches its own file.

use std::time::Duration;

const MIB: usize = 1024 * 1024;
const HOUR: Duration = Duration::from_secs(60 * 60);

/// Facts about a provider that shape how its deliveries are handled; returned
/// by [`Verifier::profile`](crate::Verifier::profile).
///
/// Build one from [`ProviderProfile::default`] and change what your provider
/// does differently:
///
/// ```
/// use hookgate::verify::ProviderProfile;
/// use std::time::Duration;
/// let mut profile = ProviderProfile::default();
/// profile.answer_within = Duration::from_secs(3);
/// assert_eq!(profile.body_limit, 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderProfile {
    /// The largest body the provider sends, in bytes; larger deliveries are
    /// refused (413) before anything reads them. Defaults to 1 MiB.
    pub body_limit: usize,
    /// How long the provider waits for an answer before it counts the delivery
    /// as failed. The pipeline's answer budget stays below it. Defaults to 10 s.
    pub answer_within: Duration,
    /// How long after the first attempt the provider may still deliver the same
    /// event (its retries, or manual redeliveries): completed events are
    /// remembered that long. Defaults to 72 h.
    pub retention: Duration,
    /// Whether the provider retries a failed (non-2xx) delivery on its own.
    /// When it does not (GitHub), a failed delivery waits for a redelivery.
    /// Defaults to `true`.
    pub retries: bool,
    /// Whether event kinds are `event.action` and a handler pattern naming the
    /// bare event (`issues`) also matches them (`issues.opened`), as GitHub's
    /// are. Defaults to `false`.
    pub kinds_carry_action: bool,
    /// Whether the signature covers the event's deduplication id and kind, so
    /// that neither can be changed without breaking it: Stripe's are inside the
    /// signed body. GitHub and Shopify sign the body only and name the delivery
    /// in unsigned headers, so a captured body can be sent again under a fresh
    /// id or another kind; [`PipelineBuilder::replay_guard`](crate::PipelineBuilder::replay_guard)
    /// closes that for the providers where this is `false`.
    ///
    /// Defaults to `false`: a verifier has to claim this protection explicitly,
    /// because when it is wrongly claimed the guard refuses to cover the
    /// provider, whereas when it is wrongly denied, the only cost is that
    /// `replay_guard("*")` also covers it.
    pub signs_identity: bool,
    /// The names of [`Identity`](crate::verify::Identity) metadata that, like
    /// the id and kind, come from unsigned headers and tell the handlers which
    /// delivery this is (Shopify: `shop_domain`, since one app secret signs
    /// every shop's deliveries). With the replay guard on, a body seen again with
    /// other values is refused as a replay. Keep it to values a provider's own
    /// retries never change. Defaults to none.
    pub identity_metadata: &'static [&'static str],
    /// The headers a [journal](crate::journal) keeps of a verified delivery
    /// (lowercase; case does not matter when matching): those replaying it
    /// needs (the id and kind headers of GitHub and Shopify) and those that
    /// help an operator. Never a signature header. Defaults to
    /// `content-type` and `user-agent`.
    pub journal_headers: &'static [&'static str],
    /// The headers that may hold the provider's id of one delivery (the
    /// first present wins), journaled as its delivery id (GitHub:
    /// `x-github-delivery`, Shopify: `x-shopify-webhook-id`). Defaults to
    /// none.
    pub delivery_id_headers: &'static [&'static str],
}

impl Default for ProviderProfile {
    fn default() -> Self {
        Self {
            body_limit: MIB,
            answer_within: Duration::from_secs(10),
            retention: 72 * HOUR,
            retries: true,
            kinds_carry_action: false,
            signs_identity: false,
            identity_metadata: &[],
            journal_headers: &["content-type", "user-agent"],
            delivery_id_headers: &[],
        }
    }
}
