//! The steps of one delivery, from its bytes to its answer: the size and
//! the verifier, identification and routing, the claim, and for a claimed
//! event the ordering guard, the critical work, completing the key and the
//! best-effort work. [`Pipeline::handle`] and its siblings, and replays,
//! come through here.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::attempt::{handler_name, Attempt};
use super::budget::{within, Budget};
use super::claim::ClaimMode;
use super::journaling::{Delivery, Watch};
use super::observe;
use super::recorder::Recorder;
use super::{BestEffort, Pipeline, Provider};
use crate::event::Event;
use crate::headers::Headers;
use crate::outcome::{AnswerBudgetSpent, Outcome, OutcomeKind};
use crate::registry::NamedHandler;
use crate::rejected::RejectionReason;
use crate::store::StoreError;
use crate::verify::{Identity, VerifyError};

impl Pipeline {
    pub(super) async fn process(
        &self,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
    ) -> (Outcome, Option<BestEffort>) {
        self.process_as(index, body, headers, None).await
    }

    /// Handles a delivery, or refuses it as too large without its body when
    /// `oversized` holds its size.
    pub(super) async fn process_as(
        &self,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
        oversized: Option<usize>,
    ) -> (Outcome, Option<BestEffort>) {
        let started = Instant::now();
        let inner = &*self.inner;
        let provider = index.map(|i| &inner.providers[i]);
        let span = observe::delivery_span(provider.map(|p| &*p.name), false);
        let mut watch = Watch::new(
            inner.journaling.as_ref(),
            started,
            provider,
            &body,
            headers,
            None,
        );
        let (mut outcome, best_effort_work) = match oversized {
            Some(size) => (self.too_large(index, size), None),
            None => {
                let run = pin!(self.run(started, index, body, headers, &mut watch.delivery));
                observe::in_span(&span, run).await
            }
        };
        inner.stats.delivery(&outcome.kind);
        outcome.journal_id = watch.journal_id();
        // One clock read for the journal, the span, the metrics and the
        // monitor's processing time; none when nothing needs it.
        let delivery = &mut watch.delivery;
        delivery.total =
            (delivery.timed || outcome.critical_elapsed.is_some()).then(|| started.elapsed());
        observe::delivered(&span, &watch.delivery, &outcome);
        let processing = outcome.critical_elapsed.and(watch.delivery.total);
        inner
            .stats
            .monitor
            .delivery(started, &outcome.kind, processing);
        let answer_by = provider.and_then(|p| started.checked_add(p.limits.answer_budget));
        if let Some(write) = watch.finish(&mut outcome, answer_by) {
            write.await;
        }
        (outcome, best_effort_work)
    }

    /// The outcome of a body of `size` bytes refused unread.
    pub(super) fn too_large(&self, index: Option<usize>, size: usize) -> Outcome {
        let inner = &*self.inner;
        let provider = index.map(|i| &inner.providers[i]);
        let limit = provider.map_or(inner.max_body_limit, |p| p.limits.body_limit);
        let mut outcome = Outcome::new(OutcomeKind::TooLarge {
            size: size.max(limit.saturating_add(1)),
            limit,
        });
        outcome.provider = provider.map(|p| p.name.clone());
        outcome
    }

    pub(super) async fn run(
        &self,
        started: Instant,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
        delivery: &mut Delivery<'_>,
    ) -> (Outcome, Option<BestEffort>) {
        let inner = &*self.inner;
        let done = |kind| (Outcome::new(kind), None);
        if inner.closing.load(Ordering::Acquire) {
            return done(OutcomeKind::ShuttingDown);
        }
        // Nothing larger than every provider's limit is even looked at.
        if body.len() > inner.max_body_limit {
            return done(OutcomeKind::TooLarge {
                size: body.len(),
                limit: inner.max_body_limit,
            });
        }
        let Some(provider) = index.map(|i| &inner.providers[i]) else {
            return done(OutcomeKind::VerificationFailed(
                VerifyError::UnknownProvider,
            ));
        };
        // The answers of this step are built where they are returned: an
        // outcome kept in a local would stay in this future's state beside
        // the next step's future (which builds its own).
        let refuse = |kind| (Outcome::of(provider, kind), None);
        if body.len() > provider.limits.body_limit {
            return refuse(OutcomeKind::TooLarge {
                size: body.len(),
                limit: provider.limits.body_limit,
            });
        }
        // A verifier's asynchronous preparation (PayPal's certificate fetch),
        // within the answer budget and timed as part of verifying; `None`
        // for every other verifier.
        let verifying = delivery.timed.then(Instant::now);
        // One clock read serves both steps unless preparing had to wait.
        let mut now = inner.clock.now();
        if let Some(prepare) = provider.verifier.prepare(headers, now) {
            let budget = Budget::new(started, &provider.limits);
            let failed = match within(|| budget.work_ends(), prepare).await {
                Some(Ok(())) => None,
                Some(Err(err)) => Some(err),
                None => Some(VerifyError::PreparationTimedOut {
                    budget: provider.limits.answer_budget,
                }),
            };
            if let Some(err) = failed {
                delivery.verify = verifying.map(|at| at.elapsed());
                return refuse(OutcomeKind::VerificationFailed(err));
            }
            now = inner.clock.now();
        }
        let verified = provider.verifier.verify(&body, headers, now);
        delivery.verify = verifying.map(|at| at.elapsed());
        if let Err(err) = verified {
            return refuse(OutcomeKind::VerificationFailed(err));
        }
        self.run_verified(started, provider, body, headers, delivery, ClaimMode::Once)
            .await
    }

    /// The steps after verification (identify, route, claim, critical work,
    /// complete, best-effort work), for a delivery or a replay.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_verified(
        &self,
        started: Instant,
        provider: &Provider,
        body: Bytes,
        headers: &Headers,
        delivery: &mut Delivery<'_>,
        mode: ClaimMode,
    ) -> (Outcome, Option<BestEffort>) {
        let inner = &*self.inner;
        let mut outcome = Outcome::of(provider, OutcomeKind::Ignored);
        let finish = |mut outcome: Outcome, kind| {
            outcome.kind = kind;
            (outcome, None)
        };
        // The provider's check of the endpoint is answered, not handled.
        if let Some(handshake) = provider.verifier.handshake(&body, headers) {
            return finish(outcome, OutcomeKind::Handshake(handshake));
        }
        // Matched where they are made, the identification and the claim
        // below are not kept in this future's state beside the next step's.
        let identity = match provider
            .verifier
            .identify(&body, headers)
            .and_then(|mut identity| {
                if !provider.dedup.is_provider_default() {
                    identity.id = provider.dedup.derive(Some(&identity.id), &body, headers)?;
                }
                Ok(identity)
            }) {
            Ok(identity) => identity,
            Err(err) => {
                self.reject(
                    &outcome,
                    None,
                    RejectionReason::Unusable(err.clone()),
                    &body,
                    headers,
                );
                return finish(outcome, OutcomeKind::Unusable(err));
            }
        };
        // Until the event is claimed, its id and kind stay in `identity` and
        // are moved into the outcome of an answer without work (a duplicate
        // costs no copies); a claimed event's outcome gets copies below.
        let finish_unclaimed = |mut outcome: Outcome, identity: Identity, kind| {
            name_event(&mut outcome, identity);
            finish(outcome, kind)
        };
        if inner
            .registry
            .route(
                &provider.name,
                &identity.kind,
                provider.profile.kinds_carry_action,
            )
            .is_empty()
        {
            return finish_unclaimed(outcome, identity, OutcomeKind::Ignored);
        }
        let budget = Budget::new(started, &provider.limits);
        // The claim step (the replay guard's registration included) must leave
        // the settle reserve for completing the key.
        let claiming = delivery.timed.then(Instant::now);
        let claimed_at;
        let (key, token) = {
            let claimed = {
                let claim = pin!(self.claim(provider, &outcome, &identity, &body, headers, mode));
                within(|| budget.work_ends(), claim).await
            };
            // The same reading starts the critical handlers' clock.
            claimed_at = claiming.map(|_| Instant::now());
            delivery.claim = claiming.zip(claimed_at).map(|(from, to)| to - from);
            match claimed {
                Some(Ok(claimed)) => claimed,
                Some(Err(kind)) => return finish_unclaimed(outcome, identity, kind),
                None => {
                    let spent = AnswerBudgetSpent::Claim(provider.limits.answer_budget);
                    let err = StoreError::unavailable(spent);
                    let kind = OutcomeKind::StoreUnavailable(Arc::new(err));
                    return finish_unclaimed(outcome, identity, kind);
                }
            }
        };
        let _in_flight = inner.stats.monitor.claimed(started);
        if delivery.timed {
            delivery.attempt = Some(token.0);
        }
        if delivery.tag.is_some() {
            delivery.event = Some((identity.id.clone(), identity.kind.clone()));
        }
        let attempt = Attempt {
            inner,
            key,
            token,
            limits: &provider.limits,
            budget,
            claimed_at,
        };
        // Built only once the key is held: duplicates never pay for it.
        let event = Event::new(provider.name.clone(), identity, body);
        let (kind, best_effort_work) = self
            .run_claimed(
                provider,
                &attempt,
                &event,
                &mut outcome,
                headers,
                delivery,
                mode,
            )
            .await;
        // The outcome takes the event's id and kind over when nothing else
        // holds the event (no best-effort work, no handler kept a clone).
        match event.into_identity() {
            Ok(identity) => name_event(&mut outcome, identity),
            Err(event) => {
                outcome.event_id = Some(event.id().to_owned());
                outcome.event_kind = Some(event.kind().to_owned());
            }
        }
        outcome.kind = kind;
        (outcome, best_effort_work)
    }

    /// The steps of a claimed event: the ordering guard, the critical work,
    /// completing the key and the best-effort work; the answer's kind. The
    /// outcome's event id and kind are not set yet.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_claimed(
        &self,
        provider: &Provider,
        attempt: &Attempt<'_>,
        event: &Event,
        outcome: &mut Outcome,
        headers: &Headers,
        delivery: &mut Delivery<'_>,
        mode: ClaimMode,
    ) -> (OutcomeKind, Option<BestEffort>) {
        let inner = &*self.inner;
        let routes = inner.registry.route(
            event.provider(),
            event.kind(),
            provider.profile.kinds_carry_action,
        );
        // The store is asked for its watermarks only under a guard.
        let order = provider.ordering.as_ref().and_then(|guard| {
            let watermarks = inner.store.watermarks()?;
            let (object, at) = guard.watermark_of(&provider.name, event)?;
            Some((watermarks, object, at))
        });
        if let (Some((watermarks, object, at)), ClaimMode::Once) = (&order, mode) {
            if let Err(kind) = attempt.check_order(*watermarks, object, *at).await {
                if let OutcomeKind::Stale { at, newest } = kind {
                    let object = object.clone();
                    let reason = RejectionReason::Stale { object, at, newest };
                    let identity = Some(event.identity());
                    self.reject(outcome, identity, reason, event.body(), headers);
                }
                return (kind, None);
            }
        }
        let critical = match attempt.run_critical(event, routes, outcome).await {
            Ok(last) => match &order {
                Some((watermarks, object, at)) => attempt
                    .advance_order(*watermarks, object, *at)
                    .await
                    .map(|()| last),
                None => Ok(last),
            },
            Err(kind) => Err(kind),
        };
        let last = match critical {
            Ok(last) => last,
            Err(kind) => return (kind, None),
        };
        match attempt
            .finish(event, routes, handler_name(last), outcome)
            .await
        {
            // The best-effort jobs are in the outbox, for a relay.
            Ok(Some(count)) => (OutcomeKind::Processed { best_effort: count }, None),
            Ok(None) => {
                let best_effort: Vec<NamedHandler> = routes.best_effort().cloned().collect();
                let count = best_effort.len();
                let best_effort_work = if count > 0 {
                    if delivery.tag.is_some() {
                        delivery.best_effort =
                            best_effort.iter().map(NamedHandler::shared_name).collect();
                    }
                    let tag = delivery.tag.clone();
                    Some(inner.best_effort.register(event, best_effort, tag).await)
                } else {
                    None
                };
                (
                    OutcomeKind::Processed { best_effort: count },
                    best_effort_work,
                )
            }
            Err(kind) => (kind, None),
        }
    }

    /// Hands an authentic delivery whose handlers did not run to the host's
    /// hook, if any.
    pub(super) fn reject(
        &self,
        outcome: &Outcome,
        identity: Option<&Identity>,
        reason: RejectionReason,
        body: &Bytes,
        headers: &Headers,
    ) {
        let Some(hook) = &self.inner.on_rejected else {
            return;
        };
        if !hook.deliver(outcome, identity, reason, body, headers) {
            Recorder::bump(&self.inner.stats.rejected_hook_panics);
        }
    }
}

impl Outcome {
    /// An answer of `kind` for a delivery to `provider`.
    pub(super) fn of(provider: &Provider, kind: OutcomeKind) -> Self {
        let mut outcome = Outcome::new(kind);
        outcome.provider = Some(provider.name.clone());
        outcome
    }
}

/// Moves the event's id and kind into the outcome.
fn name_event(outcome: &mut Outcome, identity: Identity) {
    outcome.event_id = Some(identity.id);
    outcome.event_kind = Some(identity.kind);
}
