//! Tail filters: which records a follower wants.

use std::collections::{BTreeMap, HashSet};

use super::traceparent::is_trace_id;
use super::validate::{check_level, check_service, Invalid};
use super::{Level, Record, Scope};
use crate::proto::v1 as pb;

/// A follower's criteria; every one that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact service names; empty matches all.
    services: HashSet<String>,
    /// Lowest level let through; `None` lets everything through.
    min_level: Option<Level>,
    /// Exact node names; empty matches all.
    nodes: HashSet<String>,
    trace_id: Option<String>,
    /// Every pair must be present in the record with that value.
    attributes: BTreeMap<String, String>,
    /// A substring of the message.
    contains: Option<String>,
    /// The services the follower may read at all (its principal's `tail`
    /// scope); `None`: every service.
    scope: Option<Scope>,
}

impl Filter {
    /// Reads the criteria of a `TailRequest`. A criterion that no record could
    /// ever match (a malformed service name or trace id) is refused rather than
    /// left to follow nothing forever.
    pub fn from_request(request: &pb::TailRequest) -> Result<Filter, Invalid> {
        for (i, service) in request.services.iter().enumerate() {
            check_service(service).map_err(|e| Invalid::new(format!("services[{i}]"), e.reason))?;
        }
        if !request.trace_id.is_empty() && !is_trace_id(&request.trace_id) {
            return Err(Invalid::new(
                "trace_id",
                "must be 32 lowercase hex digits, not all zeros",
            ));
        }
        let min_level = match request.min_level {
            0 => None,
            n => Some(check_level(n).map_err(|e| Invalid::new("min_level", e.reason))?),
        };
        Ok(Filter {
            services: request.services.iter().cloned().collect(),
            min_level,
            nodes: request.nodes.iter().cloned().collect(),
            trace_id: non_empty(&request.trace_id),
            attributes: request.attributes.clone(),
            contains: non_empty(&request.contains),
            scope: None,
        })
    }

    /// Lets through only services `scope` allows, on top of every other
    /// criterion: a follower with no service filter sees exactly its scope.
    pub fn within(mut self, scope: &Scope) -> Filter {
        self.scope = (!scope.is_everything()).then(|| scope.clone());
        self
    }

    /// Whether `record` passes every criterion. Cheapest checks first.
    pub fn matches(&self, record: &Record) -> bool {
        self.min_level.is_none_or(|min| record.level >= min)
            && (self.services.is_empty() || self.services.contains(&record.service))
            && self
                .scope
                .as_ref()
                .is_none_or(|scope| scope.allows(&record.service))
            && (self.nodes.is_empty() || self.nodes.contains(&record.node))
            && self
                .trace_id
                .as_ref()
                .is_none_or(|trace| *trace == record.trace_id)
            && self
                .attributes
                .iter()
                .all(|(k, v)| record.attributes.get(k) == Some(v))
            && self
                .contains
                .as_ref()
                .is_none_or(|needle| record.message.contains(needle.as_str()))
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture;

    fn record(service: &str, level: Level) -> Record {
        Record {
            service: service.into(),
            node: "pod-1".into(),
            level,
            message: "payment failed for order 42".into(),
            attributes: [
                ("region".into(), "eu".into()),
                ("tier".into(), "gold".into()),
            ]
            .into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            ..fixture::record()
        }
    }

    fn filter(request: pb::TailRequest) -> Filter {
        Filter::from_request(&request).expect("valid filter")
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        assert!(filter(Default::default()).matches(&record("a", Level::Trace)));
    }

    #[test]
    fn services_match_exactly() {
        let f = filter(pb::TailRequest {
            services: vec!["billing".into(), "auth".into()],
            ..Default::default()
        });
        assert!(f.matches(&record("billing", Level::Info)));
        assert!(f.matches(&record("auth", Level::Info)));
        assert!(!f.matches(&record("billing2", Level::Info)));
    }

    #[test]
    fn min_level_lets_through_that_level_and_above() {
        let f = filter(pb::TailRequest {
            min_level: pb::Level::Warn as i32,
            ..Default::default()
        });
        assert!(!f.matches(&record("a", Level::Info)));
        assert!(f.matches(&record("a", Level::Warn)));
        assert!(f.matches(&record("a", Level::Fatal)));
    }

    #[test]
    fn criteria_that_can_never_match_are_refused() {
        let bad_service = Filter::from_request(&pb::TailRequest {
            services: vec!["ok".into(), "not.ok".into()],
            ..Default::default()
        })
        .expect_err("refused");
        assert_eq!(bad_service.field, "services[1]");
        let bad_trace = Filter::from_request(&pb::TailRequest {
            trace_id: "XYZ".into(),
            ..Default::default()
        })
        .expect_err("refused");
        assert_eq!(bad_trace.field, "trace_id");
    }

    #[test]
    fn an_unknown_min_level_is_refused() {
        let err = Filter::from_request(&pb::TailRequest {
            min_level: 9,
            ..Default::default()
        })
        .expect_err("refused");
        assert_eq!(err.field, "min_level");
    }

    #[test]
    fn nodes_trace_attributes_and_contains_all_must_match() {
        let base = pb::TailRequest {
            nodes: vec!["pod-1".into()],
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            attributes: [("region".into(), "eu".into())].into(),
            contains: "order 42".into(),
            ..Default::default()
        };
        assert!(filter(base.clone()).matches(&record("a", Level::Info)));
        for miss in [
            pb::TailRequest {
                nodes: vec!["pod-2".into()],
                ..base.clone()
            },
            pb::TailRequest {
                trace_id: "a".repeat(32),
                ..base.clone()
            },
            pb::TailRequest {
                attributes: [("region".into(), "us".into())].into(),
                ..base.clone()
            },
            pb::TailRequest {
                attributes: [("absent".into(), String::new())].into(),
                ..base.clone()
            },
            pb::TailRequest {
                contains: "ORDER".into(),
                ..base.clone()
            },
        ] {
            assert!(
                !filter(miss.clone()).matches(&record("a", Level::Info)),
                "{miss:?}"
            );
        }
    }
}
